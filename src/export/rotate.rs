//! JSON lines to a file whose size is bounded: when the next write would take it past
//! `max_bytes`, the file is renamed `<path>.1` (older ones shift to `.2`, ...; the oldest
//! beyond `keep` is deleted) and a new file is started. A daemon that writes records to
//! disk therefore never fills it, however long it runs.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub struct RotatingFile {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
    keep: usize,
}

impl RotatingFile {
    /// Appends to `path` (created if missing). `keep`: rotated files kept beside it.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<RotatingFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            written,
            max_bytes,
            keep,
        })
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        p.into()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(self.rotated(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    /// The writer hands whole lines (one record) per call, so a rotation never splits one.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_stay_within_the_bound_and_only_keep_rotations_remain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        let mut f = RotatingFile::open(&path, 100, 2).unwrap();
        let line = b"{\"n\":\"0123456789012345678\"}\n"; // 28 bytes
        for _ in 0..20 {
            f.write_all(line).unwrap();
        }
        f.flush().unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["records.jsonl", "records.jsonl.1", "records.jsonl.2"]
        );
        for n in &names {
            let text = std::fs::read_to_string(dir.path().join(n)).unwrap();
            assert!(text.len() <= 100, "{n}: {} bytes", text.len());
            // Whole lines only.
            assert!(text.lines().all(|l| l.len() == 27), "{n}");
        }
        // 20 lines: 3 per file, so the newest file holds the last 20 % 3 = 2 lines.
        let newest = std::fs::read_to_string(&path).unwrap();
        assert_eq!(newest.lines().count(), 2);
    }

    #[test]
    fn reopening_continues_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, vec![b'x'; 90]).unwrap();
        let mut f = RotatingFile::open(&path, 100, 1).unwrap();
        f.write_all(&[b'y'; 20]).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("r.jsonl.1")).unwrap().len(),
            90
        );
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'y'; 20]);
    }
}
