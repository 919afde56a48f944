//! Benchmark (issue 18): a snapshot of `--mib` MiB of incompressible data, then another after
//! `--changed-percent` of it was rewritten in `--regions` places, then a restore; beside them,
//! a plain copy of the same bytes (read and write, no crypto) as the machine's own yardstick.
//!
//! ```text
//! cargo run --release -p hearth-backup --bin hearth-bench-backup -- --mib 1024
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // bench code

use std::time::Instant;

use hearth_backup::{BackupKey, Chunking, DirStore, restore, snapshot};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

fn main() {
    let mib = arg("--mib", 1024);
    let percent = arg("--changed-percent", 1);
    let regions = arg("--regions", 16).max(1);
    let dir =
        tempfile::tempdir_in(std::env::var("HEARTH_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file_mib = 64u64;
    let files = mib.div_ceil(file_mib);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut noise = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    };
    for i in 0..files {
        std::fs::write(
            data.join(format!("f{i:03}")),
            noise((file_mib << 20) as usize),
        )
        .unwrap();
    }
    let total = files * (file_mib << 20);
    let store = DirStore::new(dir.path().join("store"));
    let key = BackupKey::generate();
    let t = Instant::now();
    let (first, _, s1) = snapshot(&data, &key, &store, None, 1, Chunking::default()).unwrap();
    let first_secs = t.elapsed().as_secs_f64();
    // Rewrite `percent`% of the bytes in `regions` places spread over the files.
    let changed = total * percent / 100;
    let each = (changed / regions) as usize;
    for r in 0..regions {
        let file = data.join(format!("f{:03}", r % files));
        let mut bytes = std::fs::read(&file).unwrap();
        let at = ((r / files) as usize * 7919 * 4096 + 12345) % (bytes.len() - each);
        bytes[at..at + each].copy_from_slice(&noise(each));
        std::fs::write(&file, &bytes).unwrap();
    }
    let t = Instant::now();
    let (second, _, s2) =
        snapshot(&data, &key, &store, Some(first), 2, Chunking::default()).unwrap();
    let second_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let r = restore(&key, &store, &second, &dir.path().join("restored")).unwrap();
    let restore_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for i in 0..files {
        let name = format!("f{i:03}");
        std::fs::copy(data.join(&name), copy.join(&name)).unwrap();
    }
    let copy_secs = t.elapsed().as_secs_f64();
    let mb = |b: u64, s: f64| b as f64 / s / 1e6;
    println!("data: {} MiB in {files} files", total >> 20);
    println!(
        "first snapshot: {:.1} s ({:.0} MB/s), {} chunks, {} bytes stored",
        first_secs,
        mb(total, first_secs),
        s1.chunks,
        s1.new_bytes
    );
    println!(
        "after {percent}% rewritten in {regions} places: {:.1} s, {} new chunks, {} bytes stored = {:.2}% of the data",
        second_secs,
        s2.new_chunks,
        s2.new_bytes,
        s2.new_bytes as f64 / total as f64 * 100.0
    );
    println!(
        "restore: {:.1} s ({:.0} MB/s), {} chunks checked; plain copy of the same files: {:.1} s ({:.0} MB/s); restore at {:.0}% of the copy",
        restore_secs,
        mb(r.bytes, restore_secs),
        r.chunks,
        copy_secs,
        mb(total, copy_secs),
        copy_secs / restore_secs * 100.0
    );
}
