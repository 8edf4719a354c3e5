//! Tests on real tokenizer files: the SmolLM2 GGUF and the Llama 3 / Qwen3 `tokenizer.json`s that
//! `scripts/fixtures.sh` fetches. A missing fixture fails the test with instructions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use turbine_tokens::{
    GgufArray, GgufFile, GgufValue, GgufWriter, IncrementalDetokenizer, ModelTokenizer, Tokenizer,
    cache_dir,
};

/// Where the fixtures live, failing loudly when they have not been fetched.
mod fixtures {
    use super::*;

    pub fn path(relative: &str) -> PathBuf {
        let path = cache_dir().join(relative);
        assert!(
            path.exists(),
            "fixture {} is missing: run scripts/fixtures.sh (it fetches into $TURBINE_CACHE, \
             default ~/.cache/turbine)",
            path.display()
        );
        path
    }

    pub fn smollm2_gguf() -> PathBuf {
        path("models/SmolLM2-135M-Instruct.Q4_1.gguf")
    }

    pub fn tokenizer_dir(family: &str) -> PathBuf {
        path(&format!("fixtures/tokenizers/{family}"))
    }
}

/// Texts every tokenizer must round-trip.
const TEXTS: &[&str] = &[
    "Hello, world!",
    "fn main() {\n    println!(\"{}\", 1 + 2);\n}\n",
    "12345 and 3.14159, 1,000,000",
    "你好，世界！日本語のテキスト",
    "I love 🦀 and 😀👍🏽!",
    "a  b   c\t\td\n\n\ne    ",
    " leading and trailing spaces ",
    "I'm sure they'll say it's fine, DON'T you think?",
    "Ünïcödé naïve café — “quotes” and ‘apostrophes’",
    "",
];

/// Decoding and streaming give back the text exactly.
fn assert_round_trip(tokenizer: &Arc<Tokenizer>, text: &str, ids: &[u32]) {
    assert_eq!(tokenizer.decode(ids, false).expect("decode"), text);
    let mut stream = IncrementalDetokenizer::new(tokenizer.clone(), false);
    let mut streamed: String = ids.iter().map(|&id| stream.push(id)).collect();
    streamed.push_str(&stream.finish());
    assert_eq!(streamed, text, "streamed detokenization of {ids:?}");
}

#[test]
fn smollm2_gguf_matches_reference_ids() {
    let gguf = GgufFile::open(fixtures::smollm2_gguf()).expect("open gguf");
    let tokenizer = Arc::new(Tokenizer::from_gguf(&gguf).expect("tokenizer from gguf"));
    let reference: BTreeMap<String, Vec<u32>> =
        serde_json::from_str(include_str!("fixtures/smollm2_ids.json")).expect("reference json");
    assert!(reference.len() >= 12);
    for (text, expected) in &reference {
        let ids = tokenizer.encode(text, false).expect("encode");
        assert_eq!(&ids, expected, "ids of {text:?}");
        // The file says add_bos_token = false, so special tokens change nothing.
        assert_eq!(&tokenizer.encode(text, true).expect("encode"), expected);
        assert_round_trip(&tokenizer, text, &ids);
    }
}

#[test]
fn smollm2_gguf_special_tokens_and_settings() {
    let model = ModelTokenizer::load(fixtures::smollm2_gguf()).expect("load gguf");
    let t = &model.tokenizer;
    assert_eq!(t.vocab_size(), 49152);
    assert_eq!(t.bos_token(), Some("<|im_start|>"));
    assert_eq!(t.eos_token(), Some("<|im_end|>"));
    assert_eq!(t.eos_token_ids(), &[2, 0], "<|im_end|> then <|endoftext|>");
    assert!(t.is_special(1) && t.is_special(16) && !t.is_special(17));
    assert_eq!(t.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(t.id_to_token(1).as_deref(), Some("<|im_start|>"));
    assert_eq!(t.token_bytes(1), b"<|im_start|>");
    assert_eq!(t.token_bytes(t.token_to_id("Ġthe").expect("Ġthe")), b" the");
    assert_eq!(t.token_bytes(u32::MAX), b"");
    assert_eq!(
        t.decode(&[1, 4093, 198, 2], true).expect("decode"),
        "user\n"
    );
    assert!(!model.add_bos_token);
    assert_eq!(model.context_length, Some(8192));
    let template = model.chat_template.as_deref().expect("chat template");
    assert!(template.contains("<|im_start|>"));
}

#[test]
fn smollm2_gguf_tensors() {
    let gguf = GgufFile::open(fixtures::smollm2_gguf()).expect("open gguf");
    assert_eq!(gguf.version(), 3);
    assert_eq!(gguf.architecture(), Some("llama"));
    assert_eq!(gguf.tensors().len(), 272);
    let embd = gguf.tensor("token_embd.weight").expect("token_embd.weight");
    assert_eq!(embd.dims, [576, 49152]);
    assert_eq!(
        embd.ggml_type, 8,
        "Q8_0 (the Q4_1 file keeps embeddings at 8 bits)"
    );
    assert_eq!(gguf.tensor_data(embd).len(), 576 * 49152 / 32 * 34);
    let total: u64 = gguf.tensors().iter().map(|t| t.size).sum();
    assert!(total > 80_000_000, "{total} bytes of tensors");
    assert_eq!(gguf.get_u32("llama.block_count"), Some(30));
}

fn hf_tokenizer(family: &str) -> Arc<Tokenizer> {
    let path = fixtures::tokenizer_dir(family).join("tokenizer.json");
    Arc::new(Tokenizer::from_json_file(path).expect("tokenizer.json"))
}

#[test]
fn llama3_tokenizer_json() {
    let t = hf_tokenizer("llama3");
    assert_eq!(
        t.encode("Hello world", false).expect("encode"),
        [9906, 1917]
    );
    assert_eq!(t.encode("<|eot_id|>", false).expect("encode"), [128009]);
    assert!(t.is_special(128009));
    assert!(t.eos_token_ids().contains(&128009) && t.eos_token_ids().contains(&128001));
    for text in TEXTS {
        let ids = t.encode(text, false).expect("encode");
        assert_round_trip(&t, text, &ids);
    }
}

#[test]
fn qwen3_tokenizer_json() {
    let t = hf_tokenizer("qwen3");
    assert_eq!(
        t.encode("Hello world", false).expect("encode"),
        [9707, 1879]
    );
    assert_eq!(t.encode("<|im_start|>", false).expect("encode"), [151644]);
    assert!(t.eos_token_ids().contains(&151645) && t.eos_token_ids().contains(&151643));
    for text in TEXTS {
        let ids = t.encode(text, false).expect("encode");
        assert_round_trip(&t, text, &ids);
    }
    // `<think>` is an added token but not a special one: it survives skip_special_tokens.
    let think = t.token_to_id("<think>").expect("<think>");
    assert!(!t.is_special(think));
    let ids = t.encode("<|im_start|><think>hi", false).expect("encode");
    assert_eq!(t.decode(&ids, true).expect("decode"), "<think>hi");
}

#[test]
fn hf_model_directories() {
    let llama3 = ModelTokenizer::load(fixtures::tokenizer_dir("llama3")).expect("llama3 dir");
    assert_eq!(llama3.tokenizer.bos_token(), Some("<|begin_of_text|>"));
    assert_eq!(llama3.tokenizer.eos_token(), Some("<|end_of_text|>"));
    assert_eq!(llama3.tokenizer.eos_token_ids()[0], 128001);
    assert!(llama3.chat_template.is_some());
    assert_eq!(
        llama3.context_length, None,
        "model_max_length is a placeholder 1e30"
    );

    let qwen3 = ModelTokenizer::load(fixtures::tokenizer_dir("qwen3")).expect("qwen3 dir");
    assert_eq!(qwen3.tokenizer.bos_token(), None);
    assert_eq!(qwen3.tokenizer.eos_token(), Some("<|im_end|>"));
    assert!(!qwen3.add_bos_token);
    assert_eq!(qwen3.context_length, Some(131072));
    assert!(
        qwen3
            .chat_template
            .as_deref()
            .is_some_and(|t| t.contains("<|im_start|>"))
    );
}

/// Writes the GGUF metadata llama.cpp's converter would produce for a byte-level BPE
/// `tokenizer.json`, so the GGUF path can be checked against the original.
fn gguf_from_tokenizer_json(family: &str, pre: &str) -> GgufFile {
    let dir = fixtures::tokenizer_dir(family);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("tokenizer.json")).expect("read"))
            .expect("json");
    let model = &json["model"];
    let vocab = model["vocab"].as_object().expect("vocab");
    let added = json["added_tokens"].as_array().expect("added_tokens");
    let size = vocab.len() + added.len();
    let mut tokens = vec![String::new(); size];
    let mut types = vec![1i32; size];
    for (token, id) in vocab {
        tokens[id.as_u64().expect("id") as usize] = token.clone();
    }
    for t in added {
        let id = t["id"].as_u64().expect("id") as usize;
        tokens[id] = t["content"].as_str().expect("content").to_string();
        types[id] = if t["special"] == true { 3 } else { 4 };
    }
    let merges: Vec<String> = model["merges"]
        .as_array()
        .expect("merges")
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => s.clone(),
            pair => format!(
                "{} {}",
                pair[0].as_str().expect("a"),
                pair[1].as_str().expect("b")
            ),
        })
        .collect();
    let mut w = GgufWriter::new();
    w.add("general.architecture", GgufValue::String("test".into()))
        .add("tokenizer.ggml.model", GgufValue::String("gpt2".into()))
        .add("tokenizer.ggml.pre", GgufValue::String(pre.into()))
        .add(
            "tokenizer.ggml.tokens",
            GgufValue::Array(GgufArray::String(tokens)),
        )
        .add(
            "tokenizer.ggml.token_type",
            GgufValue::Array(GgufArray::I32(types)),
        )
        .add(
            "tokenizer.ggml.merges",
            GgufValue::Array(GgufArray::String(merges)),
        )
        .add("tokenizer.ggml.add_bos_token", GgufValue::Bool(false));
    let path = std::env::temp_dir().join(format!("turbine-{family}-{}.gguf", std::process::id()));
    w.write(&path).expect("write gguf");
    let gguf = GgufFile::open(&path).expect("open written gguf");
    std::fs::remove_file(&path).ok();
    gguf
}

#[test]
fn gguf_pre_tokenizers_match_the_original_tokenizer_json() {
    let extra = [
        "<|im_start|>user\nHi<|im_end|>\n<think>ok</think>",
        "Numbers 1234567 and x=42;y=3.5\r\n\r\n  indented\n\n\n",
        "HELLO'S they'RE We've It'll",
    ];
    for (family, pre) in [("llama3", "llama-bpe"), ("qwen3", "qwen2")] {
        let original = hf_tokenizer(family);
        let rebuilt = Arc::new(
            Tokenizer::from_gguf(&gguf_from_tokenizer_json(family, pre)).expect("from gguf"),
        );
        for text in TEXTS.iter().chain(&extra) {
            let ids = rebuilt.encode(text, false).expect("encode");
            assert_eq!(
                ids,
                original.encode(text, false).expect("encode"),
                "{family}: {text:?}"
            );
            assert_round_trip(&rebuilt, text, &ids);
        }
    }
}

/// llama.cpp's tokenizer test cases (`ggml-vocab-*.gguf` with `.inp` texts and `.out` ids): our
/// GGUF tokenizers must produce llama.cpp's ids for every supported vocabulary type and
/// pre-tokenizer, SentencePiece (`llama-spm`, `phi-3`) and byte-level BPE alike.
#[test]
fn llama_cpp_vocab_test_cases() {
    let vocabs = [
        "llama-spm",
        "phi-3",
        "llama-bpe",
        "qwen2",
        "qwen35",
        "gpt-2",
        "starcoder",
        "refact",
        "command-r",
        "mpt",
    ];
    for name in vocabs {
        let base = fixtures::path(&format!("fixtures/llama-vocab/ggml-vocab-{name}.gguf"));
        let gguf = GgufFile::open(&base).expect("open vocab");
        let tokenizer = Arc::new(Tokenizer::from_gguf(&gguf).expect(name));
        let read = |ext: &str| {
            let mut path = base.clone().into_os_string();
            path.push(ext);
            std::fs::read_to_string(&path).expect("test file")
        };
        let (inputs, outputs) = (read(".inp"), read(".out"));
        let mut texts: Vec<&str> = inputs.split("\n__ggml_vocab_test__\n").collect();
        if texts.last() == Some(&"") {
            texts.pop();
        }
        let expected: Vec<Vec<u32>> = outputs
            .lines()
            .map(|line| {
                line.split_whitespace()
                    .map(|id| id.parse().expect("id"))
                    .collect()
            })
            .collect();
        assert_eq!(texts.len(), expected.len(), "{name}: test count");
        assert!(texts.len() >= 40, "{name}: {} tests", texts.len());
        for (text, want) in texts.iter().zip(&expected) {
            let ids = tokenizer.encode(text, false).expect("encode");
            assert_eq!(&ids, want, "{name}: ids of {text:?}");
            // Streaming gives the same text as a full decode.
            let mut stream = IncrementalDetokenizer::new(tokenizer.clone(), false);
            let mut streamed = stream.push_many(&ids);
            streamed.push_str(&stream.finish());
            let decoded = tokenizer.decode(&ids, false).expect("decode");
            let decoded = match name {
                // SentencePiece decoding strips the prefix space; the stream keeps it.
                "llama-spm" | "phi-3" if !ids.is_empty() => format!(" {decoded}"),
                _ => decoded,
            };
            assert_eq!(streamed, decoded, "{name}: streamed {text:?}");
        }
    }
}
