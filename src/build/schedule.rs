//! Running a build's stages: every stage whose dependencies are built starts at once, up to
//! `--max-parallel-stages` at a time, each on a thread of its own.
//!
//! A stage depends on the stage it is built `FROM` and on every stage it copies from (the plan's
//! cross-stage dependencies); stages start in Dockerfile order among those ready. A reference
//! the plan cannot see (an ONBUILD trigger of a base image doing `COPY --from=<stage>`) waits in
//! [`Board::finished`] for that stage, and a waiting stage gives its slot back, so waits never
//! deadlock. When a stage fails, no new stage starts, the running ones stop before their next
//! instruction, and the first failure is the build's error. The image and the report do not
//! depend on the order stages ran in: reports come out in stage order.
//!
//! Stages starting from one image at the same moment pull it one after the other (the second
//! finds the blobs in the store), see [`Executor::pull`].
//!
//! Left out: stopping an instruction that is already running when another stage fails (a RUN
//! finishes first).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::plan::{Base, Producer};

use super::BuildError;
use super::report::{FoundSource, StageReport};
use super::stage::{Executor, Finished, StagesOutcome};

/// Posts a stage whose thread panicked as failed, so the scheduler does not wait for it.
struct PanicGuard<'a> {
    board: &'a Board,
    index: usize,
    location: String,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut state = self.board.lock();
        state.running.remove(&self.index);
        if state.error.is_none() {
            state.error = Some(BuildError::Instruction {
                location: self.location.clone(),
                message: format!("internal error: building stage {} panicked", self.index),
            });
        }
        self.board.changed.notify_all();
    }
}

/// What the stages of one build have done so far, shared by the threads building them.
#[derive(Default)]
pub(super) struct Board {
    state: Mutex<BoardState>,
    changed: Condvar,
}

#[derive(Default)]
struct BoardState {
    pending: BTreeSet<usize>,
    running: BTreeSet<usize>,
    /// Running stages blocked in [`Board::finished`]; they do not hold a slot.
    waiting: usize,
    finished: BTreeMap<usize, Arc<Finished>>,
    reports: Vec<StageReport>,
    found: Vec<(usize, Vec<FoundSource>)>,
    error: Option<BuildError>,
}

impl Board {
    fn lock(&self) -> MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The finished stage `index`, waiting for it while it is still to be built; None when it
    /// will not be (not selected, failed, or the build is stopping).
    pub fn finished(&self, index: usize) -> Option<Arc<Finished>> {
        let mut state = self.lock();
        loop {
            if let Some(done) = state.finished.get(&index) {
                return Some(done.clone());
            }
            let coming = state.pending.contains(&index) || state.running.contains(&index);
            if !coming || state.error.is_some() {
                return None;
            }
            state.waiting += 1;
            self.changed.notify_all();
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
            state.waiting -= 1;
        }
    }

    /// Whether more than one stage is building right now.
    pub fn parallel(&self) -> bool {
        self.lock().running.len() > 1
    }

    /// Whether a stage failed, so the others should stop.
    pub fn stopping(&self) -> bool {
        self.lock().error.is_some()
    }
}

impl Executor<'_> {
    /// The stages `index` needs built before it starts, as far as the plan knows.
    fn dependencies(&self, index: usize) -> BTreeSet<usize> {
        let mut deps = BTreeSet::new();
        if let Base::Stage(parent) = self.plan.stages[index].base {
            deps.insert(parent);
        }
        for dep in self.plan.deps.iter().filter(|d| d.consumer == index) {
            if let Producer::Stage(p) = dep.producer {
                deps.insert(p);
            }
        }
        deps
    }

    /// Builds every selected stage and returns the target's image.
    pub fn run_stages(&self) -> StagesOutcome {
        let selected = self.selected();
        let deps: BTreeMap<usize, BTreeSet<usize>> = selected
            .iter()
            .map(|&i| {
                let mut d = self.dependencies(i);
                d.retain(|p| selected.contains(p));
                (i, d)
            })
            .collect();
        let limit = match self.request.max_parallel_stages {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        self.board.lock().pending = selected.iter().copied().collect();
        std::thread::scope(|scope| {
            let mut state = self.board.lock();
            loop {
                if state.error.is_some() {
                    state.pending.clear();
                }
                if state.pending.is_empty() && state.running.is_empty() {
                    break;
                }
                let busy = state.running.len() - state.waiting.min(state.running.len());
                let ready: Vec<usize> = state
                    .pending
                    .iter()
                    .copied()
                    .filter(|i| deps[i].iter().all(|d| state.finished.contains_key(d)))
                    .take(limit.saturating_sub(busy))
                    .collect();
                // Nothing running and nothing ready cannot happen with dependencies that point
                // backwards; should it, the first pending stage runs and reports what it lacks.
                let ready = match (ready.is_empty(), state.running.is_empty()) {
                    (true, true) => state.pending.first().copied().into_iter().collect(),
                    _ => ready,
                };
                for index in ready {
                    state.pending.remove(&index);
                    state.running.insert(index);
                    // A panic (a bug) becomes the stage's failure (posted by its guard while
                    // unwinding), so the build still ends with an error and a report.
                    scope.spawn(move || {
                        let job = std::panic::AssertUnwindSafe(|| self.stage_job(index));
                        let _ = std::panic::catch_unwind(job);
                    });
                }
                state = self
                    .board
                    .changed
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
        });
        let mut state = self.board.lock();
        let mut reports = std::mem::take(&mut state.reports);
        reports.sort_by_key(|r| r.index);
        let mut found = std::mem::take(&mut state.found);
        found.sort_by_key(|(index, _)| *index);
        let found = found.into_iter().flat_map(|(_, f)| f).collect();
        let image = match state.error.take() {
            Some(e) => Err(e),
            None => Ok(std::mem::take(&mut state.finished)),
        };
        drop(state);
        StagesOutcome {
            image: image
                .and_then(|mut finished| self.final_image(finished.remove(&self.plan.target))),
            stages: reports,
            found,
        }
    }

    /// One stage on its thread: build it, check what later stages copy from it, post the result.
    fn stage_job(&self, index: usize) {
        // A panic (a bug) must not leave the scheduler waiting for this stage forever: the
        // guard posts it as a failure while unwinding.
        let _guard = PanicGuard {
            board: &self.board,
            index,
            location: self.dockerfile.file.clone(),
        };
        let stage = &self.plan.stages[index];
        tracing::info!(
            "building stage {} ({}) from {}",
            index,
            stage.display_name(),
            stage.from
        );
        let start_ms = self.started.elapsed().as_millis() as u64;
        let (result, mut report) = self.build_stage(index);
        let checked = result.and_then(|done| {
            let found = self.check_cross_stage(index, &done)?;
            Ok((done, found))
        });
        report.start_ms = start_ms;
        report.end_ms = self.started.elapsed().as_millis() as u64;
        let mut state = self.board.lock();
        state.running.remove(&index);
        match checked {
            Ok((done, found)) => {
                state.finished.insert(index, Arc::new(done));
                state.found.push((index, found));
            }
            // The first failure is the build's; a stage that stopped because of it says so in
            // its report.
            Err(e) => {
                if state.error.is_none() {
                    state.error = Some(e);
                    report.failed = true;
                }
            }
        }
        state.reports.push(report);
        self.board.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression guard: a stage thread that panics must not leave the scheduler waiting.
    #[test]
    fn a_panicking_stage_is_posted_as_failed() {
        let board = Board::default();
        board.lock().running.insert(1);
        let panicked = std::thread::scope(|s| {
            s.spawn(|| {
                let _guard = PanicGuard {
                    board: &board,
                    index: 1,
                    location: "Dockerfile".into(),
                };
                panic!("a bug");
            })
            .join()
            .is_err()
        });
        assert!(panicked);
        let state = board.lock();
        assert!(state.running.is_empty());
        let error = state
            .error
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("building stage 1 panicked"), "{error}");
    }
}
