from transformers import AutoTokenizer, Qwen2Tokenizer

from harness.jobs.tiny_model import SPECIAL_TOKENS

TEXTS = [
    "user\nState the final answer to the following arithmetic problem: 12 + 7 - 3 =\nGive your final answer inside <answer></answer> tags.",
    "<answer>-42</answer>",
    "How many 1 bits are there in the binary representation of the number 1023?",
    "unseen words: héllo wörld, naïve café 😀 \t tabs\n\n  spaces  ",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
]


def test_ids_identical_after_save_and_reload(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(reloaded, Qwen2Tokenizer)
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert reloaded(text, add_special_tokens=False)["input_ids"] == ids
        assert reloaded.decode(ids) == text
    assert reloaded.eos_token == tokenizer.eos_token
    assert reloaded.pad_token_id == tokenizer.pad_token_id


def test_digits_are_single_tokens_and_chat_markers_are_special(tokenizer):
    ids = tokenizer("1234", add_special_tokens=False)["input_ids"]
    assert len(ids) == 4  # Qwen2's pre-tokenizer splits numbers into digits
    for token in SPECIAL_TOKENS:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1


def test_bpe_learned_merges(tokenizer):
    ids = tokenizer("Give your final answer", add_special_tokens=False)["input_ids"]
    assert len(ids) <= 4  # frequent words merged into single tokens
