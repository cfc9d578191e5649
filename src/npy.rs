//! Writing `.npy` files (NumPy's array format, version 1.0): a small header and raw
//! little-endian f32 data, so reference scripts can load pio's logits directly.

use std::io::Write;
use std::path::Path;

/// Writes a 2-D f32 array `[rows.len(), cols]` to `path`.
pub fn write_f32_2d(path: &Path, rows: &[Vec<f32>]) -> std::io::Result<()> {
    let cols = rows.first().map_or(0, Vec::len);
    if rows.iter().any(|r| r.len() != cols) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "rows of different lengths",
        ));
    }
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        rows.len(),
        cols
    );
    // magic(6) + version(2) + header length(2) + dict + padding + '\n', a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let header = format!("{dict}{}\n", " ".repeat(pad));
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    for r in rows {
        for v in r {
            f.write_all(&v.to_le_bytes())?;
        }
    }
    f.flush()
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_is_aligned_and_data_follows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        super::write_f32_2d(&p, &[vec![1.0, 2.0], vec![3.0, 4.0]]).unwrap();
        let b = std::fs::read(&p).unwrap();
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        assert!(std::str::from_utf8(&b[10..10 + hlen])
            .unwrap()
            .contains("(2, 2)"));
        assert_eq!(&b[10 + hlen..10 + hlen + 4], &1.0f32.to_le_bytes());
        assert_eq!(b.len(), 10 + hlen + 16);
    }
}
