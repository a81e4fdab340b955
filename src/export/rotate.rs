//! JSON lines to a file whose size is bounded: when the next write would take it past
//! `max_bytes`, the file is renamed `<path>.1` (older ones shift to `.2`, ...; the oldest
//! beyond `keep` is deleted) and a new file is started. A daemon that writes records to
//! disk therefore never fills it, however long it runs. When the disk is full anyway
//! (others fill it), a write fails whole: the file keeps ending at a line's end.

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
    /// The writer hands whole lines, many per call (a 64 KiB buffer of records): this
    /// writes the lines that fit under the bound and returns their length (`write_all`
    /// comes back with the rest), rotating first when not even one fits. A file thus ends
    /// at a line's end, and only a single line longer than the bound makes it overflow.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.max_bytes.saturating_sub(self.written);
        let mut take = buf.len();
        if take as u64 > room {
            match memchr::memrchr(b'\n', &buf[..room as usize]) {
                Some(i) => take = i + 1,
                None => {
                    if self.written > 0 {
                        self.rotate()?;
                    }
                    if take as u64 > self.max_bytes {
                        take = match memchr::memrchr(b'\n', &buf[..self.max_bytes as usize]) {
                            Some(i) => i + 1,
                            // One line longer than the bound: it goes alone into a file.
                            None => memchr::memchr(b'\n', buf).map_or(buf.len(), |i| i + 1),
                        };
                    }
                }
            }
        }
        // Whole lines or nothing: when the disk fills half-way, what was written of these
        // lines is cut off again, so the file still ends at a line's end and every line in
        // it parses (the caller counts the lines it could not write).
        if let Err(e) = self.file.write_all(&buf[..take]) {
            let _ = self.file.set_len(self.written);
            return Err(e);
        }
        self.written += take as u64;
        Ok(take)
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
    fn many_lines_in_one_write_are_split_at_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        let mut f = RotatingFile::open(&path, 100, 100).unwrap();
        // Lines of 10..=39 bytes, as the JSON lines writer hands them: many per call.
        let mut all = Vec::new();
        for i in 0..60 {
            let len = 10 + i % 30;
            let mut line = vec![b'a' + (i % 26) as u8; len - 1];
            line.push(b'\n');
            all.extend_from_slice(&line);
        }
        // Buffers of whole lines, up to 700 bytes each.
        let mut start = 0;
        while start < all.len() {
            let end = (start + 700).min(all.len());
            let end = start + memchr::memrchr(b'\n', &all[start..end]).unwrap() + 1;
            f.write_all(&all[start..end]).unwrap();
            start = end;
        }
        // One line longer than the bound goes alone into its own file.
        let long = [vec![b'L'; 149], vec![b'\n'], b"after\n".to_vec()].concat();
        f.write_all(&long).unwrap();
        f.flush().unwrap();
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        // Oldest first: the highest rotation number, the live file last.
        files.sort_by_key(|(n, _)| {
            std::cmp::Reverse(n.rsplit('.').next().unwrap().parse::<u32>().unwrap_or(0))
        });
        let mut joined = Vec::new();
        for (name, text) in &files {
            assert!(text.ends_with(b"\n"), "{name} ends mid-line");
            if !text.starts_with(b"L") {
                assert!(text.len() <= 100, "{name}: {} bytes", text.len());
            }
            joined.extend_from_slice(text);
        }
        assert_eq!(joined.len(), all.len() + long.len());
        assert!(joined.ends_with(&long));
        assert_eq!(files.last().unwrap().1, b"after\n");
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
