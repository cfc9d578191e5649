//! pio: load a Qwen3-family model described by a YAML spec and generate text.
