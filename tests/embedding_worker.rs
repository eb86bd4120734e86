//! The embedding worker without a GPU: a stand-in encoder that records
//! its passes, and a gate that holds each pass until the test lets it run,
//! so that what is queued when is deterministic (no sleeps). Checks input
//! order, the batch limits, sharing passes between requests, skipping a
//! request whose client went away, validation, failures and shutdown.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wgserve::engine::embedding::{
    EmbeddingError, EmbeddingHandle, EmbeddingReceiver, Embeddings, Encoder, EncoderLimits,
};
use wgserve::engine::worker::Health;

const LIMITS: EncoderLimits = EncoderLimits {
    max_batch_tokens: 10,
    max_batch_inputs: 3,
    max_input_tokens: 6,
    vocab_size: 100,
    dimensions: 2,
};

const WAIT: Duration = Duration::from_secs(30);

enum Behaviour {
    Work,
    FailAtPass(usize, bool),
}

/// The vector of an input is [its first id, the pass that computed it].
/// Before each pass it reports the pass's inputs and waits for a go.
struct GatedEncoder {
    passes: mpsc::Sender<Vec<Vec<u32>>>,
    go: Arc<Mutex<mpsc::Receiver<()>>>,
    count: usize,
    behaviour: Behaviour,
}

impl Encoder for GatedEncoder {
    fn limits(&self) -> EncoderLimits {
        LIMITS
    }

    fn encode(&mut self, inputs: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
        let _ = self.passes.send(inputs.iter().map(|i| i.to_vec()).collect());
        self.go.lock().unwrap().recv_timeout(WAIT).map_err(|_| "the test never said go".to_string())?;
        let pass = self.count;
        self.count += 1;
        match self.behaviour {
            Behaviour::FailAtPass(at, panic) if at == pass => {
                if panic {
                    panic!("device lost at pass {pass}");
                }
                Err(format!("device lost at pass {pass}"))
            }
            _ => Ok(inputs.iter().map(|i| vec![i[0] as f32, pass as f32]).collect()),
        }
    }
}

struct Rig {
    handle: EmbeddingHandle,
    passes: mpsc::Receiver<Vec<Vec<u32>>>,
    go: mpsc::Sender<()>,
}

impl Rig {
    fn new(behaviour: Behaviour) -> Rig {
        let (passes_tx, passes) = mpsc::channel();
        let (go, go_rx) = mpsc::channel();
        let encoder =
            GatedEncoder { passes: passes_tx, go: Arc::new(Mutex::new(go_rx)), count: 0, behaviour };
        let (handle, _thread) = EmbeddingHandle::spawn(encoder);
        Rig { handle, passes, go }
    }

    /// The inputs of the next pass, which then runs.
    fn next_pass(&self) -> Vec<Vec<u32>> {
        let inputs = self.passes.recv_timeout(WAIT).expect("a pass");
        self.go.send(()).unwrap();
        inputs
    }

    fn submit(&self, inputs: &[&[u32]]) -> EmbeddingReceiver {
        self.handle.submit(inputs.iter().map(|i| i.to_vec()).collect()).expect("accepted")
    }
}

fn result(receiver: EmbeddingReceiver) -> Embeddings {
    receiver.blocking_recv().expect("an answer")
}

/// (first id, pass) of each vector.
fn ids_and_passes(vectors: &[Vec<f32>]) -> Vec<(u32, usize)> {
    vectors.iter().map(|v| (v[0] as u32, v[1] as usize)).collect()
}

#[test]
fn passes_respect_the_limits_and_keep_input_order() {
    let rig = Rig::new(Behaviour::Work);
    // Held in the first pass while the rest queue up.
    let first = rig.submit(&[&[1]]);
    let held = rig.passes.recv_timeout(WAIT).unwrap();
    assert_eq!(held, vec![vec![1]]);
    let big = rig.submit(&[&[10, 0, 0, 0], &[11, 0, 0, 0], &[12], &[13, 0, 0, 0, 0, 0], &[14]]);
    let small = rig.submit(&[&[20, 0], &[21]]);
    rig.go.send(()).unwrap();
    // One input of each request in turn, under 10 tokens and 3 inputs.
    assert_eq!(rig.next_pass(), vec![vec![10, 0, 0, 0], vec![20, 0], vec![11, 0, 0, 0]]);
    assert_eq!(rig.next_pass(), vec![vec![12], vec![21], vec![13, 0, 0, 0, 0, 0]]);
    assert_eq!(rig.next_pass(), vec![vec![14]]);
    assert_eq!(ids_and_passes(&result(first).unwrap()), vec![(1, 0)]);
    assert_eq!(ids_and_passes(&result(small).unwrap()), vec![(20, 1), (21, 2)]);
    assert_eq!(ids_and_passes(&result(big).unwrap()), vec![(10, 1), (11, 1), (12, 2), (13, 2), (14, 3)]);
}

#[test]
fn a_request_whose_client_left_is_skipped() {
    let rig = Rig::new(Behaviour::Work);
    let first = rig.submit(&[&[1]]);
    rig.passes.recv_timeout(WAIT).unwrap();
    drop(rig.submit(&[&[30], &[31]]));
    let kept = rig.submit(&[&[40]]);
    rig.go.send(()).unwrap();
    assert_eq!(rig.next_pass(), vec![vec![40]]);
    assert_eq!(ids_and_passes(&result(kept).unwrap()), vec![(40, 1)]);
    assert!(result(first).is_ok());
}

#[test]
fn inputs_that_can_never_run_are_refused_at_once() {
    let rig = Rig::new(Behaviour::Work);
    let refuse = |inputs: Vec<Vec<u32>>| rig.handle.submit(inputs).err();
    assert_eq!(refuse(vec![]), Some(EmbeddingError::NoInputs));
    let Some(EmbeddingError::InvalidInput { index: 1, message, .. }) = refuse(vec![vec![1], vec![]]) else {
        panic!("an empty input");
    };
    assert!(message.contains("at least one token"), "{message}");
    let Some(EmbeddingError::InvalidInput { index: 0, message, .. }) = refuse(vec![vec![1; 7]]) else {
        panic!("a long input");
    };
    assert!(message.contains('7') && message.contains('6'), "{message}");
    let Some(EmbeddingError::InvalidInput { index: 2, position: Some(1), message }) =
        refuse(vec![vec![1], vec![2], vec![3, 100]])
    else {
        panic!("an id outside the vocabulary");
    };
    assert!(message.contains("100"), "{message}");
    // Nothing of that reached the encoder; a good request still runs.
    let ok = rig.submit(&[&[5]]);
    assert_eq!(rig.next_pass(), vec![vec![5]]);
    assert!(result(ok).is_ok());
}

#[test]
fn a_failed_pass_fails_every_queued_request_and_later_ones() {
    for panic in [false, true] {
        let rig = Rig::new(Behaviour::FailAtPass(0, panic));
        let first = rig.submit(&[&[1]]);
        rig.passes.recv_timeout(WAIT).unwrap();
        let queued = rig.submit(&[&[2]]);
        rig.go.send(()).unwrap();
        for receiver in [first, queued] {
            let Err(EmbeddingError::Failed(cause)) = result(receiver) else { panic!("a failure") };
            assert!(cause.contains("device lost at pass 0"), "{cause}");
        }
        assert!(matches!(rig.handle.health(), Health::Failed(_)));
        assert!(matches!(rig.handle.submit(vec![vec![3]]), Err(EmbeddingError::Failed(_))));
    }
}

#[test]
fn shutdown_stops_queued_requests() {
    let rig = Rig::new(Behaviour::Work);
    let first = rig.submit(&[&[1]]);
    rig.passes.recv_timeout(WAIT).unwrap();
    let queued = rig.submit(&[&[2]]);
    rig.handle.shutdown();
    rig.go.send(()).unwrap();
    assert!(result(first).is_ok());
    assert_eq!(result(queued), Err(EmbeddingError::Stopped));
    assert_eq!(rig.handle.health(), Health::Stopped);
    assert_eq!(rig.handle.submit(vec![vec![3]]).err(), Some(EmbeddingError::Stopped));
}
