//! Tokenizers built from small GGUF files written by the test: the SentencePiece ("llama") path,
//! special-token handling, and the errors for what is not supported.

use std::sync::Arc;

use turbine_tokens::{
    GgufArray, GgufFile, GgufValue, GgufWriter, IncrementalDetokenizer, Tokenizer, TokensError,
};

fn open(writer: &GgufWriter, name: &str) -> GgufFile {
    let path = std::env::temp_dir().join(format!("turbine-tok-{}-{name}.gguf", std::process::id()));
    writer.write(&path).expect("write gguf");
    let gguf = GgufFile::open(&path).expect("open gguf");
    std::fs::remove_file(&path).ok();
    gguf
}

fn strings(items: &[String]) -> GgufValue {
    GgufValue::Array(GgufArray::String(items.to_vec()))
}

/// A SentencePiece vocabulary: control tokens, 256 byte tokens, pieces for "hello world", and a
/// user-defined `<think>`. Longer pieces score higher, so they merge first.
fn sentencepiece_gguf(extra: &[(&str, GgufValue)]) -> GgufWriter {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    tokens.extend((0..=255).map(|b| format!("<0x{b:02X}>")));
    types.extend([6; 256]);
    let pieces = [
        "▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "▁he", "ll", "llo", "▁hello", "▁w", "or",
        "▁wor", "ld", "▁world",
    ];
    tokens.extend(pieces.iter().map(|p| p.to_string()));
    types.extend([1; 18]);
    tokens.push("<think>".into());
    types.push(4);
    let scores: Vec<f32> = tokens.iter().map(|t| t.chars().count() as f32).collect();
    let mut w = GgufWriter::new();
    w.add("general.architecture", GgufValue::String("llama".into()))
        .add("tokenizer.ggml.model", GgufValue::String("llama".into()))
        .add("tokenizer.ggml.tokens", strings(&tokens))
        .add(
            "tokenizer.ggml.scores",
            GgufValue::Array(GgufArray::F32(scores)),
        )
        .add(
            "tokenizer.ggml.token_type",
            GgufValue::Array(GgufArray::I32(types)),
        )
        .add("tokenizer.ggml.bos_token_id", GgufValue::U32(1))
        .add("tokenizer.ggml.eos_token_id", GgufValue::U32(2))
        .add("tokenizer.ggml.unknown_token_id", GgufValue::U32(0));
    for (key, value) in extra {
        w.add(*key, value.clone());
    }
    w
}

fn id(t: &Tokenizer, token: &str) -> u32 {
    t.token_to_id(token).expect(token)
}

#[test]
fn sentencepiece_from_scores() {
    let t = Arc::new(Tokenizer::from_gguf(&open(&sentencepiece_gguf(&[]), "spm")).expect("spm"));
    let (hello, world) = (id(&t, "▁hello"), id(&t, "▁world"));
    assert_eq!(
        t.encode("hello world", false).expect("encode"),
        [hello, world]
    );
    // llama.cpp adds bos to SentencePiece vocabularies unless the file says otherwise.
    assert_eq!(
        t.encode("hello world", true).expect("encode"),
        [1, hello, world]
    );
    assert_eq!(t.bos_token(), Some("<s>"));
    assert_eq!(t.eos_token_ids(), &[2]);

    // Characters outside the vocabulary fall back to their UTF-8 bytes.
    let ids = t.encode("hello 你", false).expect("encode");
    let bytes: Vec<u32> = "你".bytes().map(|b| 3 + u32::from(b)).collect();
    assert_eq!(ids, [&[hello, id(&t, "▁")][..], &bytes].concat());
    assert_eq!(t.decode(&ids, false).expect("decode"), "hello 你");

    // In a stream the first token keeps its space; split characters wait for their last byte.
    let mut stream = IncrementalDetokenizer::new(t.clone(), false);
    let deltas: Vec<String> = ids.iter().map(|&i| stream.push(i)).collect();
    assert_eq!(deltas, [" hello", " ", "", "", "你"]);
    assert_eq!(t.token_bytes(bytes[0]), [0xE4]);
    assert_eq!(t.token_bytes(hello), b" hello");

    // Control tokens are special; the user-defined one is matched whole but not special.
    let think = id(&t, "<think>");
    assert!(t.is_special(1) && t.is_special(0) && !t.is_special(think) && !t.is_special(hello));
    let ids = t.encode("<s><think>hello", false).expect("encode");
    assert_eq!(ids, [1, think, hello]);
    assert_eq!(t.decode(&ids, true).expect("decode"), "<think> hello");
}

#[test]
fn sentencepiece_without_space_prefix_and_with_eos() {
    let w = sentencepiece_gguf(&[
        ("tokenizer.ggml.add_space_prefix", GgufValue::Bool(false)),
        ("tokenizer.ggml.add_bos_token", GgufValue::Bool(false)),
        ("tokenizer.ggml.add_eos_token", GgufValue::Bool(true)),
        ("tokenizer.ggml.eot_token_id", GgufValue::U32(0)),
    ]);
    let t = Tokenizer::from_gguf(&open(&w, "spm-eos")).expect("spm");
    let ids = t.encode("hello world", true).expect("encode");
    assert_eq!(ids[0], id(&t, "h"), "no ▁ prepended");
    assert_eq!(ids.last(), Some(&2));
    assert_eq!(t.eos_token_ids(), &[2, 0]);
    assert_eq!(t.decode(&ids, true).expect("decode"), "hello world");
}

fn byte_level_gguf(pre: &str) -> GgufWriter {
    let tokens: Vec<String> = ["<|endoftext|>", "a", "b", "ab", "Ġ", "Ġab"]
        .map(String::from)
        .into();
    let merges: Vec<String> = ["a b", "Ġ ab"].map(String::from).into();
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", GgufValue::String("gpt2".into()))
        .add("tokenizer.ggml.pre", GgufValue::String(pre.into()))
        .add("tokenizer.ggml.tokens", strings(&tokens))
        .add("tokenizer.ggml.merges", strings(&merges))
        .add(
            "tokenizer.ggml.token_type",
            GgufValue::Array(GgufArray::I32(vec![3, 1, 1, 1, 1, 1])),
        )
        .add("tokenizer.ggml.eos_token_id", GgufValue::U32(0));
    w
}

#[test]
fn byte_level_from_merges() {
    let t = Tokenizer::from_gguf(&open(&byte_level_gguf("gpt2"), "bpe")).expect("bpe");
    assert_eq!(
        t.encode("ab ab<|endoftext|>", true).expect("encode"),
        [3, 5, 0]
    );
    assert_eq!(t.eos_token(), Some("<|endoftext|>"));
    assert_eq!(t.bos_token(), None);
    assert_eq!(t.token_bytes(5), b" ab");
    assert_eq!(t.decode(&[3, 5, 0], true).expect("decode"), "ab ab");
}

fn expect_err(w: &GgufWriter, name: &str) -> TokensError {
    Tokenizer::from_gguf(&open(w, name)).expect_err("should fail")
}

#[test]
fn unsupported_and_invalid_tokenizers_are_errors() {
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", GgufValue::String("bert".into()))
        .add("tokenizer.ggml.tokens", strings(&["a".into()]));
    let err = expect_err(&w, "bert");
    assert!(
        matches!(&err, TokensError::Unsupported(m) if m.contains("\"bert\"")),
        "{err}"
    );

    let err = expect_err(&byte_level_gguf("bloom"), "bloom");
    assert!(
        matches!(&err, TokensError::Unsupported(m) if m.contains("bloom")),
        "{err}"
    );

    let mut w = byte_level_gguf("gpt2");
    w.add("tokenizer.ggml.bos_token_id", GgufValue::U32(99));
    let err = expect_err(&w, "bos-range");
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");

    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", GgufValue::String("gpt2".into()));
    let err = expect_err(&w, "no-tokens");
    assert!(err.to_string().contains("tokenizer.ggml.tokens"), "{err}");

    let mut w = byte_level_gguf("gpt2");
    w.add("tokenizer.ggml.add_bos_token", GgufValue::Bool(true));
    let err = expect_err(&w, "no-bos");
    assert!(err.to_string().contains("no bos_token_id"), "{err}");
}
