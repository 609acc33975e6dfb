#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Task payloads: round trips, bounds, and no panic on any bytes.

use agora_protocols::task::{MAX_EMBED_TEXTS, MAX_GENERATE_TOKENS, cosine};
use agora_protocols::{
    ChatMessage, EmbedInput, EmbedOutput, Finish, GenerateInput, GenerateOutput, Payload,
    PayloadError, Sampling,
};
use proptest::prelude::*;

fn chat() -> GenerateInput {
    GenerateInput {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "Name three colours.".into(),
        }],
        max_tokens: 16,
        sampling: Sampling::Greedy,
        stop: vec!["\n\n".into()],
    }
}

#[test]
fn payloads_round_trip() {
    let input = EmbedInput {
        texts: vec!["a".into(), "b c".into()],
    };
    assert_eq!(
        EmbedInput::from_bytes(&input.to_bytes().unwrap()).unwrap(),
        input
    );
    let output = EmbedOutput {
        dimension: 3,
        vectors: vec![vec![0.5, -0.25, 1.0], vec![0.0, 0.0, 1.0]],
        tokens: 5,
    };
    assert_eq!(
        EmbedOutput::from_bytes(&output.to_bytes().unwrap()).unwrap(),
        output
    );
    assert_eq!(
        GenerateInput::from_bytes(&chat().to_bytes().unwrap()).unwrap(),
        chat()
    );
    let generated = GenerateOutput {
        text: "Red, green and blue.".into(),
        token_ids: vec![1, 2, 3],
        prompt_tokens: 12,
        finish: Finish::Eos,
    };
    assert_eq!(
        GenerateOutput::from_bytes(&generated.to_bytes().unwrap()).unwrap(),
        generated
    );
}

#[test]
fn bounds_are_enforced_on_both_sides() {
    let none = EmbedInput { texts: vec![] };
    assert!(matches!(none.to_bytes(), Err(PayloadError::Invalid(_))));
    let many = EmbedInput {
        texts: vec!["x".into(); MAX_EMBED_TEXTS + 1],
    };
    assert!(many.to_bytes().is_err());
    // The encoder refuses it, and so does the decoder when someone else encodes it.
    let raw = agora_protocols::codec::encode(&many).unwrap();
    assert!(EmbedInput::from_bytes(&raw).is_err());

    let ragged = EmbedOutput {
        dimension: 2,
        vectors: vec![vec![1.0, 2.0], vec![1.0]],
        tokens: 0,
    };
    assert!(EmbedOutput::from_bytes(&agora_protocols::codec::encode(&ragged).unwrap()).is_err());
    let nan = EmbedOutput {
        dimension: 1,
        vectors: vec![vec![f32::NAN]],
        tokens: 0,
    };
    assert!(nan.to_bytes().is_err());

    let mut c = chat();
    c.max_tokens = MAX_GENERATE_TOKENS + 1;
    assert!(c.to_bytes().is_err());
    let mut c = chat();
    c.messages[0].role = "root".into();
    assert!(c.to_bytes().is_err());
    let mut c = chat();
    c.sampling = Sampling::Seeded {
        temperature_milli: 700,
        top_p_milli: 0,
        seed: 1,
    };
    assert!(c.to_bytes().is_err());
    let mut c = chat();
    c.stop = vec![String::new()];
    assert!(c.to_bytes().is_err());
}

#[test]
fn cosine_of_vectors() {
    assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
    assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
    assert_eq!(cosine(&[1.0], &[1.0, 2.0]), 0.0);
    assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
}

proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = EmbedInput::from_bytes(&bytes);
        let _ = EmbedOutput::from_bytes(&bytes);
        let _ = GenerateInput::from_bytes(&bytes);
        let _ = GenerateOutput::from_bytes(&bytes);
    }
}
