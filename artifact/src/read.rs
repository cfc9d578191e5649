//! Reading a file that a user names, with a bound on its size: a wrong path (`/dev/zero`, a
//! 50 GB file, a FIFO that never ends) is an error that names the file and the bound, never
//! unbounded memory. The size is counted while reading, so files whose metadata say nothing
//! (devices, pipes, `/proc`) are bounded too.

use std::io::Read;
use std::path::Path;

/// Largest config-like JSON file read (config.json, generation_config.json, an index, a bench
/// report): real ones are kilobytes.
pub const MAX_JSON_BYTES: u64 = 64 << 20;
/// Largest tokenizer.json or tokenizer_config.json read (real ones are about 10 MB).
pub const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

/// The whole file, or an `InvalidData` error when it holds more than `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut data = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than {limit} bytes, the most pio reads from such a file"),
        ));
    }
    Ok(data)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_bounded_text(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_bounded(path, limit)?).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text: {}", e.utf8_error()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_endless_and_large_files() {
        let e = read_bounded(Path::new("/dev/zero"), 1000).unwrap_err();
        assert!(e.to_string().contains("more than 1000 bytes"), "{e}");
        let dir = std::env::temp_dir().join(format!("pio-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read_bounded(&f, 5).unwrap(), b"12345");
        assert!(read_bounded(&f, 4).is_err());
        assert_eq!(read_bounded_text(&f, 5).unwrap(), "12345");
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(read_bounded_text(&f, 5).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
