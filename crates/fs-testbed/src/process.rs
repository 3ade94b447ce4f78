//! Process registry.

use crate::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// process registry: everything a test starts, stopped by PID on drop
// ---------------------------------------------------------------------------------------

struct Proc {
    id: usize,
    label: String,
    child: Child,
    stop_signal: i32,
}

#[derive(Default)]
pub struct Registry {
    procs: Mutex<Vec<Proc>>,
    logs: Mutex<Vec<(String, PathBuf)>>,
    next: Mutex<usize>,
}

impl Registry {
    pub(crate) fn add(&self, label: &str, child: Child, stop_signal: i32) -> usize {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        let id = *n;
        self.procs.lock().unwrap().push(Proc {
            id,
            label: label.into(),
            child,
            stop_signal,
        });
        id
    }

    pub fn add_log(&self, label: &str, path: &Path) {
        self.logs
            .lock()
            .unwrap()
            .push((label.into(), path.to_path_buf()));
    }

    /// `Some(status)` if the process has exited (or was already stopped).
    pub fn exited(&self, id: usize) -> Option<Option<ExitStatus>> {
        let mut procs = self.procs.lock().unwrap();
        match procs.iter_mut().find(|p| p.id == id) {
            Some(p) => p.child.try_wait().ok().flatten().map(Some),
            None => Some(None),
        }
    }

    pub fn pid(&self, id: usize) -> Option<u32> {
        self.procs
            .lock()
            .unwrap()
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.child.id())
    }

    fn stop_proc(p: &mut Proc, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(st)) = p.child.try_wait() {
            return Some(st);
        }
        // Not reaped yet, so the PID is still ours (a zombie at worst): safe to signal.
        // SAFETY: plain kill(2) on our own un-reaped child.
        unsafe { libc::kill(p.child.id() as libc::pid_t, p.stop_signal) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = p.child.try_wait() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(25));
        }
        eprintln!(
            "[harness] {} (pid {}) ignored signal, SIGKILL",
            p.label,
            p.child.id()
        );
        let _ = p.child.kill();
        p.child.wait().ok()
    }

    /// SIGKILL process `id` and reap it (it stays registered, already exited).
    pub fn kill(&self, id: usize) {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = procs.iter_mut().find(|p| p.id == id) {
            if matches!(p.child.try_wait(), Ok(None)) {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
    }

    /// Stop one process (its stop signal, then SIGKILL after `grace`).
    pub fn stop(&self, id: usize, grace: Duration) -> Option<ExitStatus> {
        let taken = {
            let mut procs = self.procs.lock().unwrap();
            procs
                .iter()
                .position(|p| p.id == id)
                .map(|i| procs.remove(i))
        };
        taken.and_then(|mut p| Self::stop_proc(&mut p, grace))
    }

    pub(crate) fn stop_all(&self) {
        let mut procs: Vec<Proc> = std::mem::take(&mut *self.procs.lock().unwrap());
        while let Some(mut p) = procs.pop() {
            Self::stop_proc(&mut p, Duration::from_secs(3));
        }
    }

    pub(crate) fn dump_logs(&self, lines: usize) -> String {
        let mut s = String::new();
        for (label, path) in self.logs.lock().unwrap().iter() {
            let _ = writeln!(
                s,
                "----- {label}: last {lines} lines of {} -----\n{}",
                path.display(),
                tail(path, lines)
            );
        }
        s
    }
}
