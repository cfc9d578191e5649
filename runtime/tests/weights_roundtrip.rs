//! Round trips through the HF-layout writer and the loader, sharding, no-overwrite rules.

use std::borrow::Cow;
use std::path::Path;

use half::bf16;
use pio_runtime::weights::{
    random_tensor_bf16, random_tensor_f32, write_hf_dir, write_random_hf_dir, DType, TensorInfo,
    WeightDir, WeightSpec, WeightsError, WriteOptions,
};

fn specs() -> Vec<WeightSpec> {
    let (h, q, kv, ff, v) = (16, 32, 8, 24, 40);
    let mut s = vec![WeightSpec::normal(
        "model.embed_tokens.weight",
        vec![v, h],
        0.02,
    )];
    for i in 0..2 {
        let p = format!("model.layers.{i}");
        s.push(WeightSpec::ones(
            format!("{p}.input_layernorm.weight"),
            vec![h],
        ));
        s.push(WeightSpec::normal(
            format!("{p}.self_attn.q_proj.weight"),
            vec![q, h],
            0.02,
        ));
        s.push(WeightSpec::normal(
            format!("{p}.self_attn.k_proj.weight"),
            vec![kv, h],
            0.02,
        ));
        s.push(WeightSpec::normal(
            format!("{p}.self_attn.v_proj.weight"),
            vec![kv, h],
            0.02,
        ));
        s.push(WeightSpec::normal(
            format!("{p}.self_attn.o_proj.weight"),
            vec![h, q],
            0.02,
        ));
        s.push(WeightSpec::ones(
            format!("{p}.self_attn.q_norm.weight"),
            vec![4],
        ));
        s.push(WeightSpec::ones(
            format!("{p}.self_attn.k_norm.weight"),
            vec![4],
        ));
        s.push(WeightSpec::ones(
            format!("{p}.post_attention_layernorm.weight"),
            vec![h],
        ));
        s.push(WeightSpec::normal(
            format!("{p}.mlp.gate_proj.weight"),
            vec![ff, h],
            0.02,
        ));
        s.push(WeightSpec::normal(
            format!("{p}.mlp.up_proj.weight"),
            vec![ff, h],
            0.02,
        ));
        s.push(WeightSpec::normal(
            format!("{p}.mlp.down_proj.weight"),
            vec![h, ff],
            0.02,
        ));
    }
    s.push(WeightSpec::ones("model.norm.weight", vec![h]));
    s
}

fn side_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("config.json", br#"{"hidden_size": 16}"#.to_vec()),
        ("generation_config.json", br#"{"top_k": 20}"#.to_vec()),
    ]
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn assert_matches_random(wd: &WeightDir, seed: u64, specs: &[WeightSpec]) {
    for s in specs {
        assert_eq!(
            wd.tensor_f32(&s.name).unwrap(),
            random_tensor_f32(seed, s).unwrap(),
            "{}",
            s.name
        );
        let (dtype, bytes) = wd.tensor_bytes(&s.name).unwrap();
        assert_eq!(dtype, DType::BF16);
        assert_eq!(bytes.len(), s.numel().unwrap() * 2);
        assert_eq!(wd.shape(&s.name).unwrap(), s.shape.as_slice());
    }
}

#[test]
fn single_file_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    let specs = specs();
    let summary =
        write_random_hf_dir(&dir, 42, &specs, &side_files(), &WriteOptions::default()).unwrap();
    assert_eq!(summary.weight_files, vec!["model.safetensors".to_string()]);
    assert_eq!(
        entries(&dir),
        vec!["config.json", "generation_config.json", "model.safetensors"],
        "no temporary files may remain"
    );
    assert_eq!(
        std::fs::read(dir.join("generation_config.json")).unwrap(),
        br#"{"top_k": 20}"#
    );

    let wd = WeightDir::open(&dir, &specs).unwrap();
    assert_matches_random(&wd, 42, &specs);
    let total: u64 = specs.iter().map(|s| s.numel().unwrap() as u64 * 2).sum();
    assert_eq!(wd.total_bytes(), total);
    assert_eq!(summary.total_bytes, total);
    let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(wd.names().collect::<Vec<_>>(), names);
    assert_eq!(wd.files(), vec![dir.join("model.safetensors").as_path()]);
}

#[test]
fn file_format_is_what_safetensors_and_hf_expect() {
    let tmp = tempfile::tempdir().unwrap();
    let specs = specs();
    write_random_hf_dir(
        tmp.path(),
        3,
        &specs,
        &side_files(),
        &WriteOptions::default(),
    )
    .unwrap();
    let bytes = std::fs::read(tmp.path().join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!((8 + n) % 8, 0, "header padded to 8 bytes");
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["__metadata__"], serde_json::json!({"format": "pt"}));
    assert_eq!(header["model.norm.weight"]["dtype"], "BF16");

    // The reference implementation accepts the file and sees the same data.
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), specs.len());
    for s in &specs {
        let view = st.tensor(&s.name).unwrap();
        assert_eq!(view.dtype(), safetensors::Dtype::BF16);
        assert_eq!(view.shape(), s.shape.as_slice());
        let vals: Vec<bf16> = view
            .data()
            .chunks_exact(2)
            .map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]])))
            .collect();
        assert_eq!(vals, random_tensor_bf16(3, s).unwrap());
    }
}

#[test]
fn sharded_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let specs = specs();
    let opts = WriteOptions {
        force: false,
        shard_bytes: 2000,
    };
    let summary = write_random_hf_dir(dir, 7, &specs, &side_files(), &opts).unwrap();
    let n = summary.weight_files.len();
    assert!(n >= 3, "expected several shards, got {n}");
    for (i, f) in summary.weight_files.iter().enumerate() {
        assert_eq!(f, &format!("model-{:05}-of-{:05}.safetensors", i + 1, n));
        assert!(dir.join(f).is_file());
    }
    assert!(!dir.join("model.safetensors").exists());
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("model.safetensors.index.json")).unwrap())
            .unwrap();
    let total: u64 = specs.iter().map(|s| s.numel().unwrap() as u64 * 2).sum();
    assert_eq!(index["metadata"]["total_size"], total);
    let map = index["weight_map"].as_object().unwrap();
    assert_eq!(map.len(), specs.len());
    for s in &specs {
        assert!(summary
            .weight_files
            .contains(&map[&s.name].as_str().unwrap().to_string()));
    }
    // Every shard respects the limit (no single tensor here exceeds it).
    for f in &summary.weight_files {
        let bytes = std::fs::read(dir.join(f)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let data: usize = st.tensors().iter().map(|(_, v)| v.data().len()).sum();
        assert!(data <= 2000, "{f} holds {data} bytes");
    }

    let wd = WeightDir::open(dir, &specs).unwrap();
    assert_eq!(wd.files().len(), n);
    assert_matches_random(&wd, 7, &specs);
}

#[test]
fn borrowed_data_and_other_dtypes() {
    let tmp = tempfile::tempdir().unwrap();
    let a: Vec<bf16> = (0..6).map(|i| bf16::from_f32(i as f32 * 0.5)).collect();
    let infos = vec![TensorInfo {
        name: "a".into(),
        shape: vec![2, 3],
    }];
    let data = [a.clone()];
    write_hf_dir(
        tmp.path(),
        &infos,
        |i| Ok(Cow::Borrowed(&data[i][..])),
        &[] as &[(&str, Vec<u8>)],
        &WriteOptions::default(),
    )
    .unwrap();
    let wd = WeightDir::open(tmp.path(), &[WeightSpec::normal("a", vec![2, 3], 0.02)]).unwrap();
    assert_eq!(
        wd.tensor_f32("a").unwrap(),
        vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    );

    // f16 and f32 files written with the safetensors library load as f32.
    let f16s: Vec<u8> = [1.5f32, -2.25]
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes())
        .collect();
    let f32s: Vec<u8> = [3.0f32, -0.125, 7.5]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let views = vec![
        (
            "h",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F16, vec![2], &f16s).unwrap(),
        ),
        (
            "s",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3], &f32s).unwrap(),
        ),
    ];
    let dir2 = tmp.path().join("other");
    std::fs::create_dir(&dir2).unwrap();
    safetensors::serialize_to_file(views, None, &dir2.join("model.safetensors")).unwrap();
    let wd = WeightDir::open(
        &dir2,
        &[
            WeightSpec::normal("h", vec![2], 1.0),
            WeightSpec::normal("s", vec![3], 1.0),
        ],
    )
    .unwrap();
    assert_eq!(wd.tensor_f32("h").unwrap(), vec![1.5, -2.25]);
    assert_eq!(wd.tensor_f32("s").unwrap(), vec![3.0, -0.125, 7.5]);
    assert_eq!(wd.dtype("h"), Some(DType::F16));
    assert_eq!(wd.tensor_bytes("s").unwrap().0, DType::F32);
    let err = wd.tensor_f32("nope").unwrap_err();
    assert!(matches!(err, WeightsError::UnknownTensor { .. }));
    assert!(err.to_string().contains("no tensor named nope"), "{err}");
}

#[test]
fn ignored_tensor_is_tolerated_but_not_exposed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut with_head = specs();
    with_head.push(WeightSpec::normal("lm_head.weight", vec![40, 16], 0.02));
    write_random_hf_dir(
        tmp.path(),
        1,
        &with_head,
        &side_files(),
        &WriteOptions::default(),
    )
    .unwrap();
    let tied = specs();
    let err = WeightDir::open(tmp.path(), &tied).unwrap_err();
    assert!(
        err.to_string()
            .contains("unexpected tensor lm_head.weight [40, 16]"),
        "{err}"
    );
    let wd = WeightDir::open_with(tmp.path(), &tied, &["lm_head.weight"]).unwrap();
    assert!(wd.names().all(|n| n != "lm_head.weight"));
    assert!(wd.tensor_f32("lm_head.weight").is_err());
    assert_matches_random(&wd, 1, &tied);
}

#[test]
fn never_overwrites_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let specs = specs();
    write_random_hf_dir(dir, 1, &specs, &side_files(), &WriteOptions::default()).unwrap();
    let before = std::fs::read(dir.join("model.safetensors")).unwrap();
    let config_before = std::fs::read(dir.join("config.json")).unwrap();

    let other_files = vec![("config.json", b"{}".to_vec())];
    let err =
        write_random_hf_dir(dir, 2, &specs, &other_files, &WriteOptions::default()).unwrap_err();
    match &err {
        WeightsError::WouldOverwrite { paths, .. } => {
            assert!(paths.contains(&dir.join("model.safetensors")));
            assert!(paths.contains(&dir.join("config.json")));
        }
        e => panic!("wrong error {e}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("refusing to overwrite") && msg.contains("model.safetensors"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read(dir.join("config.json")).unwrap(),
        config_before
    );
    assert_eq!(
        entries(dir),
        vec!["config.json", "generation_config.json", "model.safetensors"]
    );

    // A single existing side file is enough to refuse, and nothing is written.
    let fresh = dir.join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    std::fs::write(fresh.join("config.json"), b"mine").unwrap();
    assert!(
        write_random_hf_dir(&fresh, 2, &specs, &side_files(), &WriteOptions::default()).is_err()
    );
    assert_eq!(entries(&fresh), vec!["config.json"]);
    assert_eq!(std::fs::read(fresh.join("config.json")).unwrap(), b"mine");

    // force replaces the files.
    let force = WriteOptions {
        force: true,
        ..WriteOptions::default()
    };
    write_random_hf_dir(dir, 2, &specs, &other_files, &force).unwrap();
    assert_ne!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        before
    );
    assert_eq!(std::fs::read(dir.join("config.json")).unwrap(), b"{}");
    let wd = WeightDir::open(dir, &specs).unwrap();
    assert_matches_random(&wd, 2, &specs);
}

#[test]
fn switching_layout_needs_force_and_removes_stale_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let specs = specs();
    let sharded = WriteOptions {
        force: false,
        shard_bytes: 2000,
    };
    let s = write_random_hf_dir(dir, 1, &specs, &side_files(), &sharded).unwrap();
    // Writing a single file would leave an ambiguous directory: refused.
    let err = write_random_hf_dir(
        dir,
        1,
        &specs,
        &[] as &[(&str, Vec<u8>)],
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains(&s.weight_files[0]), "{err}");
    let force = WriteOptions {
        force: true,
        ..WriteOptions::default()
    };
    write_random_hf_dir(dir, 5, &specs, &[] as &[(&str, Vec<u8>)], &force).unwrap();
    assert_eq!(
        entries(dir),
        vec!["config.json", "generation_config.json", "model.safetensors"]
    );
    assert_matches_random(&WeightDir::open(dir, &specs).unwrap(), 5, &specs);
}

#[test]
fn bad_write_input_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let infos = vec![
        TensorInfo {
            name: "a".into(),
            shape: vec![2],
        },
        TensorInfo {
            name: "b".into(),
            shape: vec![3],
        },
    ];
    let err = write_hf_dir(
        tmp.path(),
        &infos,
        |_| Ok(Cow::Owned(vec![bf16::ONE; 2])),
        &[("config.json", b"{}".to_vec())],
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("tensor b: got 2 values"), "{err}");
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));

    let dup = vec![infos[0].clone(), infos[0].clone()];
    let err = write_hf_dir(
        tmp.path(),
        &dup,
        |_| Ok(Cow::Owned(vec![bf16::ONE; 2])),
        &[] as &[(&str, Vec<u8>)],
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("listed twice"), "{err}");
    let err = write_hf_dir(
        tmp.path(),
        &infos[..1],
        |_| Ok(Cow::Owned(vec![bf16::ONE; 2])),
        &[("../evil.json", b"{}".to_vec())],
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a plain file name"), "{err}");
    assert!(entries(tmp.path()).is_empty());
}

#[test]
fn a_ranks_part_is_read_from_the_file_as_the_whole_tensor_cut() {
    // Tensor-parallel loading: each rank's rows or columns, straight from the memory map, equal
    // the whole tensor cut the same way, over several files; a split that cannot be made is an
    // error naming the tensor.
    use pio_artifact::{Shard, ShardAxis};
    let specs = specs();
    let tmp = tempfile::tempdir().unwrap();
    let opts = WriteOptions {
        shard_bytes: 1024,
        ..WriteOptions::default()
    };
    write_random_hf_dir(tmp.path(), 5, &specs, &side_files(), &opts).unwrap();
    let wd = WeightDir::open(tmp.path(), &specs).unwrap();
    let cases = [
        (
            "model.layers.1.self_attn.q_proj.weight",
            ShardAxis::Rows,
            4,
            2,
        ),
        (
            "model.layers.0.self_attn.k_proj.weight",
            ShardAxis::Rows,
            2,
            4,
        ),
        (
            "model.layers.1.self_attn.o_proj.weight",
            ShardAxis::Cols,
            4,
            4,
        ),
        (
            "model.layers.0.mlp.down_proj.weight",
            ShardAxis::Cols,
            24,
            2,
        ),
        ("model.embed_tokens.weight", ShardAxis::Rows, 40, 4),
        (
            "model.layers.0.input_layernorm.weight",
            ShardAxis::Rows,
            16,
            2,
        ),
    ];
    for (name, axis, groups, ranks) in cases {
        let shard = Shard { axis, groups };
        let shape = wd.shape(name).unwrap().to_vec();
        let whole = wd.tensor_f32(name).unwrap();
        let mut covered = 0;
        for rank in 0..ranks {
            let part = wd.tensor_part_f32(name, &shard, ranks, rank).unwrap();
            assert_eq!(
                part,
                shard.slice(&whole, &shape, ranks, rank).unwrap(),
                "{name} rank {rank}"
            );
            let (dtype, bytes) = wd.tensor_part_bytes(name, &shard, ranks, rank).unwrap();
            assert_eq!((dtype, bytes.len()), (DType::BF16, 2 * part.len()));
            covered += part.len();
        }
        // Replicated KV heads (2 groups over 4 ranks) are read twice; the rest once.
        let copies = if groups < ranks { ranks / groups } else { 1 };
        assert_eq!(covered, whole.len() * copies, "{name}");
    }
    let bad = Shard {
        axis: ShardAxis::Rows,
        groups: 3,
    };
    let e = wd
        .tensor_part_f32("model.layers.0.self_attn.q_proj.weight", &bad, 2, 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("q_proj") && e.contains("[32, 16]") && e.contains("3"),
        "{e}"
    );
    let cols_of_vector = Shard {
        axis: ShardAxis::Cols,
        groups: 2,
    };
    assert!(wd
        .tensor_part_f32("model.norm.weight", &cols_of_vector, 2, 0)
        .is_err());
}
