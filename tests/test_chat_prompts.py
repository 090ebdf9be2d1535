"""Chat prompts for the vLLM engine: rendered with the model's template, tokenized without a second BOS."""

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from prosetting.collectors.backends import chat_token_prompts
from prosetting.core.text import solver_messages


def _bos_adding_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer that adds <s> to every encoding, as Llama 3's does, with a template that writes it."""
    words = ["<unk>", "<s>", "</s>", "[system]", "[user]", "[assistant]", "reason", "well", "2+2=?"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = (
        "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    return fast


def test_one_bos_where_the_template_writes_it():
    tok = _bos_adding_tokenizer()
    assert tok("well")["input_ids"][0] == 1  # the tokenizer adds a BOS of its own
    [prompt] = chat_token_prompts(tok, [solver_messages("2+2=?", "reason well")])
    ids = prompt["prompt_token_ids"]
    assert ids.count(1) == 1 and ids[0] == 1
    assert tok.convert_ids_to_tokens(ids) == ["<s>", "[system]", "reason", "well", "[user]", "2+2=?", "[assistant]"]


def test_every_end_of_turn_token_stops_the_transformers_backend():
    from types import SimpleNamespace

    from prosetting.collectors.backends import end_of_turn_ids

    tok = _bos_adding_tokenizer()  # eos </s> = 2
    chat_model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[5, 2]))
    assert end_of_turn_ids(chat_model, tok) == [2, 5]
    assert end_of_turn_ids(SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=None)), tok) == [2]
