//! Faults injected on purpose, to prove that the engine contains them:
//! a request whose sampler panics ends alone, and a failed forward pass
//! (what a lost device looks like) fails the engine, which then restarts.
//! Nothing sets a plan but tests and the hidden `serve --inject-fault`
//! flag; an empty plan costs one comparison per step.

use super::request::RequestId;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The forward pass of this engine step (counted from 1 in each engine
    /// instance) fails as a lost device would.
    pub device_failure_at_step: Option<u64>,
    /// This request's sampler panics when it samples its token with this
    /// index (0 = the first generated token).
    pub sampler_panic: Option<(RequestId, usize)>,
}

impl FaultPlan {
    pub fn fails_device_at(&self, step: u64) -> bool {
        self.device_failure_at_step == Some(step)
    }

    /// Panics when the plan says this sample of this request does.
    pub fn check_sample(&self, id: RequestId, num_generated: usize) {
        if self.sampler_panic == Some((id, num_generated)) {
            panic!("injected sampler fault in request {id} at token {num_generated}");
        }
    }
}
