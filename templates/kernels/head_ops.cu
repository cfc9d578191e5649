{% include "common/pio.cuh" %}
// {{ doc }}
// Several independent per-head ops (head_op.cu) in one launch: blockIdx.z picks the op. The
// Q norm+RoPE, K norm+RoPE+cache write and V cache write of a layer read disjoint slices of the
// QKV projection and write disjoint outputs, so one launch replaces three.
{{ bodies }}
extern "C" __global__ void __launch_bounds__(128) {{ name }}(
{% for i in 0..n %}    const bf16* x{{ i }}, const bf16* w{{ i }}, const int* p{{ i }}, bf16* o{{ i }}, const int* s{{ i }}{% if i + 1 < n %},{% endif %}
{% endfor %})
{
    pdl_wait();
    pdl_launch_dependents();
    switch (blockIdx.z) {
{% for i in 0..n %}    case {{ i }}: op{{ i }}(x{{ i }}, w{{ i }}, p{{ i }}, o{{ i }}, s{{ i }}); break;
{% endfor %}    }
}
