//! `stream: true` answers: OpenAI's server-sent events of `chat.completion.chunk` objects.
//!
//! The mesh does not stream tokens yet: a provider answers a query with the whole generated text (that
//! is what the receipt signs). So the gateway waits for the whole answer and then sends it as a stream
//! of word-sized chunks, in one response body: a client sees exactly the events OpenAI sends (a first
//! chunk with the role, content pieces, a chunk with `finish_reason`, optionally a usage chunk, then
//! `data: [DONE]`), only all at once at the end rather than as the model produces them. Errors found
//! before the answer (a bad request, no provider, a timeout) are therefore ordinary HTTP errors with
//! their status code, never an error event inside a 200 stream.

use super::openai::{ChatChunk, ChatUsage, ChunkChoice, ChunkDelta};
use std::fmt::Write;

/// Everything the chunks of one answer share or need.
#[derive(Debug)]
pub struct StreamedAnswer<'a> {
    /// The completion id (same in every chunk).
    pub id: &'a str,
    /// Unix seconds.
    pub created: u64,
    /// The model id.
    pub model: &'a str,
    /// The whole generated text.
    pub text: &'a str,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
    /// Token counts, sent in a last chunk when the request asked for them.
    pub usage: Option<ChatUsage>,
}

/// The pieces the text is streamed in: words with the whitespace after them, so that joining the
/// pieces gives the text back byte for byte.
pub fn pieces(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(char::is_whitespace)
}

/// The `text/event-stream` body of the answer, `[DONE]` included.
pub fn event_stream(answer: &StreamedAnswer<'_>) -> Result<String, serde_json::Error> {
    let chunk = |delta: ChunkDelta, finish_reason: Option<&'static str>| ChatChunk {
        id: answer.id.to_owned(),
        object: "chat.completion.chunk",
        created: answer.created,
        model: answer.model.to_owned(),
        choices: vec![ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
        }],
        usage: None,
    };
    let mut events = vec![chunk(
        ChunkDelta {
            role: Some("assistant"),
            content: Some(String::new()),
        },
        None,
    )];
    for piece in pieces(answer.text) {
        events.push(chunk(
            ChunkDelta {
                role: None,
                content: Some(piece.to_owned()),
            },
            None,
        ));
    }
    events.push(chunk(ChunkDelta::default(), Some(answer.finish_reason)));
    if let Some(usage) = answer.usage {
        events.push(ChatChunk {
            choices: Vec::new(),
            usage: Some(usage),
            ..chunk(ChunkDelta::default(), None)
        });
    }
    let mut body = String::new();
    for event in &events {
        // Writing to a String cannot fail.
        let _ = write!(body, "data: {}\n\n", serde_json::to_string(event)?);
    }
    body.push_str("data: [DONE]\n\n");
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::{StreamedAnswer, event_stream, pieces};

    #[test]
    fn pieces_join_back_to_the_text() {
        for text in ["", "one", "Hello, world!\n\nTwo  spaces ", " lead"] {
            assert_eq!(pieces(text).collect::<String>(), text);
        }
        assert_eq!(pieces("a b").collect::<Vec<_>>(), ["a ", "b"]);
    }

    #[test]
    fn stream_has_role_content_finish_and_done() {
        let body = event_stream(&StreamedAnswer {
            id: "chatcmpl-1",
            created: 7,
            model: "m",
            text: "Hi there",
            finish_reason: "stop",
            usage: None,
        })
        .unwrap_or_default();
        let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 5, "{body}");
        assert!(events.iter().all(|e| e.starts_with("data: ")));
        assert!(events[0].contains(r#""role":"assistant""#));
        assert!(events[1].contains(r#""content":"Hi ""#));
        assert!(events[2].contains(r#""content":"there""#));
        assert!(events[3].contains(r#""finish_reason":"stop""#));
        assert_eq!(events[4], "data: [DONE]");
    }
}
