//! The private PostgreSQL started from the installed binaries.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;

use fetchq_core::embedded::EmbeddedPostgres;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};

/// Paths of the files a process holds open.
fn open_files(pid: &str) -> Vec<std::path::PathBuf> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .collect()
}

#[test]
fn the_server_does_not_inherit_the_callers_descriptors() {
    let dir = std::env::temp_dir().join(format!("fetchq-fd-test-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    // what `flock 9 cargo run ...` hands down: a descriptor without close-on-exec
    let held_path = dir.join("held.lock");
    let held = fs::File::create(&held_path).unwrap();
    fcntl(held.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();

    let pg = EmbeddedPostgres::new(dir.join("pg")).unwrap();
    pg.start().unwrap();
    let pid_file = fs::read_to_string(dir.join("pg").join("postmaster.pid")).unwrap();
    let pid = pid_file.lines().next().unwrap().trim().to_owned();
    let files = open_files(&pid);
    pg.stop().unwrap();
    drop(held);
    let _ = fs::remove_dir_all(&dir);

    assert!(!files.is_empty(), "could not read the server's descriptors");
    assert!(
        !files.iter().any(|f| f == Path::new(&held_path)),
        "the server kept the caller's descriptor open: {files:?}"
    );
}
