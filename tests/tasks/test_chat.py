"""Chat SFT: readers and bad input, assistant-only loss mask, truncation, packing, vocab resize,
GPT-2 import parity with transformers, end to end through `lmforge evaluate`, and `lmforge chat`."""

import io
import json
import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.errors import ConfigError, InputError
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.models.packing import pack_rows, packed_logits
from lmforge.tasks.chat import Chat, ChatConfig
from lmforge.tasks.chat_files import split_selector

TEXT = ("Hello there! How are you today? I am fine, thank you. What is the weather like? It is sunny and warm. "
        "Tell me a story about a cat. Once upon a time a cat sat on a mat. 你好，今天天气很好。") * 4


def _task(**kw) -> Chat:
    return Chat(ChatConfig(**kw))


@pytest.fixture(scope="module")
def tok():
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    return train_tokenizer(TEXT.split(". "), TokenizerConfig(kind="byte_bpe", vocab_size=320, family="gpt"))


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


CONV = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello there!"},
        {"role": "assistant", "content": "How are you today?"}, {"role": "user", "content": "Tell me a story."},
        {"role": "assistant", "content": "Once upon a time a cat sat on a mat."}]


# -- readers -----------------------------------------------------------------------------------


def test_reads_messages_alpaca_sharegpt_and_dialogue_layouts(tmp_path):
    m = _jsonl(tmp_path / "m.jsonl", [{"messages": CONV}])
    assert _task().read(m)[0]["messages"] == CONV
    alpaca = tmp_path / "a.json"
    alpaca.write_text(json.dumps([
        {"instruction": "Add", "input": "2 and 3", "output": "5", "system": "Be exact.",
         "history": [["Hi", "Hello!"]]},
        {"instruction": "Say hi to {{name}}", "input": "", "output": "Hi {{name}}, I am {{author}}"}], indent=2))
    task = _task(placeholders={"name": "Ann"})
    ex = task.read(alpaca)
    assert ex[0]["messages"] == [{"role": "system", "content": "Be exact."}, {"role": "user", "content": "Hi"},
                                 {"role": "assistant", "content": "Hello!"},
                                 {"role": "user", "content": "Add\n2 and 3"}, {"role": "assistant", "content": "5"}]
    assert ex[1]["messages"][-1]["content"] == "Hi Ann, I am {{author}}"
    assert ex[1]["id"] == "a.json:14"  # the line the record starts on
    assert task.warnings.counts == {"unfilled {{placeholder}} kept as text (set finetune.task.placeholders)": 1}
    share = _jsonl(tmp_path / "s.jsonl", [{"system": "S", "conversations": [
        {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}])
    assert _task().read(share)[0]["messages"] == [{"role": "system", "content": "S"},
                                                  {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    # CDial-GPT: splits in one JSON object, character-spaced Chinese joined; slices select records
    cdial = tmp_path / "toy.json"
    cdial.write_text(json.dumps({"train": [["你 好 啊", "你 也 好"], ["早 上 好", "早", "吃 了 吗"]], "test": [["a", "b"]]},
                                ensure_ascii=False), encoding="utf-8")
    task = _task()
    ex = task.read(f"{cdial}#train")
    assert ex[0]["messages"] == [{"role": "user", "content": "你好啊"}, {"role": "assistant", "content": "你也好"}]
    assert len(ex[1]["messages"]) == 2  # the trailing user turn has no reply: dropped, counted
    assert list(task.warnings.counts.values()) == [1]
    assert len(_task().read(f"{cdial}#train[1:]")) == 1 and _task().read(f"{cdial}#test")[0]["id"] == "toy.json#test[0]"
    with pytest.raises(InputError, match=r"toy.json: a JSON object of splits \(train, test\)"):
        _task().read(cdial)
    pairs = tmp_path / "p.tsv"
    pairs.write_text("how are you\tfine\n\nhi\tyo\tand\n")
    ex = _task().read(pairs)
    assert [len(e["messages"]) for e in ex] == [2, 2] and ex[1]["id"] == "p.tsv:3"
    assert split_selector("x.json#[900:]") == ("x.json", None, slice(900, None))


def test_chatterbot_yaml_directory(tmp_path):
    d = tmp_path / "bot"
    d.mkdir()
    (d / "a.yml").write_text("categories:\n- x\nconversations:\n- - Hello\n  - Hi\n- - Q?\n  - A.\n  - Thanks\n"
                             "- lonely string\n")
    (d / "b.yml").write_text("conversations:\n- - One\n  - Two\n")
    task = _task()
    ex = task.read(d)
    assert [e["id"] for e in ex] == ["a.yml:4", "a.yml:6", "b.yml:2"]
    assert ex[1]["messages"] == [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    assert sorted(task.warnings.counts.values()) == [1, 1]  # a trailing turn dropped; a one-utterance entry skipped


def test_real_sft_files_read(shared_datasets):
    d = shared_datasets / "sft"
    if not d.exists():
        pytest.skip("sft datasets missing")
    assert len(_task().read(d / "llamafactory_demo" / "alpaca_en_demo.json")) == 999
    assert len(_task().read(f"{d / 'llamafactory_demo' / 'alpaca_zh_demo.json'}#[900:]")) == 100
    task = _task()
    ex = task.read(d / "llamafactory_demo" / "glaive_toolcall_en_demo.json")
    skipped = task.warnings.counts["conversation with tool turns skipped (finetune.task.tool_turns: map keeps them)"]
    assert len(ex) + skipped == 300 and skipped > 100
    assert len(_task(tool_turns="map").read(d / "llamafactory_demo" / "glaive_toolcall_en_demo.json")) == 300
    ex = _task().read(f"{d / 'cdial_gpt_toy' / 'toy_data.json'}#valid")
    assert len(ex) == 200 and " " not in ex[0]["messages"][0]["content"]


def test_bad_input_errors_and_warnings(tmp_path):
    f = _jsonl(tmp_path / "bad.jsonl", [{"messages": CONV}, {"messages": [{"role": "user", "content": "hi"},
                                                                          {"role": "bot", "content": "yo"}]}])
    with pytest.raises(InputError, match=r"bad.jsonl:2: messages\[1\] has role 'bot'"):
        _task().read(f)
    f = _jsonl(tmp_path / "noreply.jsonl", [{"messages": CONV}, {"messages": CONV[:2]}])
    task = _task()
    assert len(task.read(f)) == 1
    assert task.warnings.lines() == [f"1 × conversation without an assistant turn skipped (first at {f}:2)"]
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InputError, match="empty.jsonl: no examples"):
        _task().read(tmp_path / "empty.jsonl")
    with pytest.raises(InputError, match="none of the 1 conversations is usable"):
        _task().read(_jsonl(tmp_path / "only.jsonl", [{"messages": CONV[:2]}]))
    with pytest.raises(InputError, match=r"x.jsonl:1: not a chat record \(text\)"):
        _task().read(_jsonl(tmp_path / "x.jsonl", [{"text": "hi"}]))
    (tmp_path / "broken.json").write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": oops}\n]')
    with pytest.raises(InputError, match=r"broken.json:3: invalid JSON"):
        _task().read(tmp_path / "broken.json")
    with pytest.raises(InputError, match="file not found"):
        _task().read(tmp_path / "nope.jsonl")


# -- encoding ----------------------------------------------------------------------------------


def test_loss_mask_covers_exactly_the_assistant_tokens(tok):
    task = _task(template="chatml")
    ctok = task.prepare_tokenizer(tok)
    assert ctok.vocab_size == tok.vocab_size + 2 and len(task._new_ids) == 2
    f = task.encode({"id": "0", "messages": CONV}, ctok)
    ids, labels = f["input_ids"], f["labels"]
    assert len(ids) == len(labels)
    targets = [t for t in labels if t != -100]
    replies = [m["content"] for m in CONV if m["role"] == "assistant"]
    # counted independently: each reply's own tokens plus one <|im_end|> per assistant turn
    assert len(targets) == sum(len(tok.encode(r)) for r in replies) + len(replies)
    end = ctok.token_to_id("<|im_end|>")
    assert ctok.decode(targets) == "".join(r + "<|im_end|>" for r in replies)
    assert targets.count(end) == 2
    # labels are the next token: wherever a label is set, it equals the following input id
    full = ids + [labels[-1]]
    assert all(lab == full[i + 1] for i, lab in enumerate(labels) if lab != -100)
    # the prompt for generation ends with the assistant header and excludes the last reply
    assert ctok.decode(f["prompt"]).endswith("Tell me a story.<|im_end|>\n<|im_start|>assistant\n")


def test_plain_template_needs_no_new_tokens(tok):
    task = _task(template="plain")
    ptok = task.prepare_tokenizer(tok)
    assert ptok.vocab_size == tok.vocab_size and ptok.chat_template.name == "plain"
    labels = task.encode({"id": "0", "messages": CONV}, ptok)["labels"]
    assert ptok.decode([t for t in labels if t != -100]).count("<|endoftext|>") == 2


def test_long_conversation_keeps_whole_turns_and_counts_a_warning(tok):
    task = _task(template="chatml", max_len=60)
    ctok = task.prepare_tokenizer(tok)
    long = CONV[:3] + [{"role": "user", "content": "Tell me a story about a cat. " * 5},
                       {"role": "assistant", "content": "Once upon a time. " * 8}]
    f = task.encode({"id": "c1", "messages": long}, ctok)
    assert len(f["input_ids"]) <= 60
    assert ctok.decode([t for t in f["labels"] if t != -100]) == "How are you today?<|im_end|>"
    assert any("whole turns kept from the start" in k for k in task.warnings.counts)
    # a first exchange longer than the row still trains on the reply's start
    huge = [{"role": "user", "content": "It is sunny and warm. " * 20}, {"role": "assistant", "content": "Fine. " * 30}]
    f = task.encode({"id": "c2", "messages": huge}, ctok)
    assert len(f["input_ids"]) == 60 and sum(t != -100 for t in f["labels"]) >= 29
    assert any("first exchange longer" in k for k in task.warnings.counts)


# -- model side --------------------------------------------------------------------------------


def _gpt(vocab, block=64, **kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=2, n_head=2, d_model=32, **kw)).eval()


@pytest.mark.parametrize("arch", [dict(), dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False,
                                               tie_embeddings=False)])
def test_packed_row_has_the_loss_of_its_conversations_alone(tok, arch):
    task = _task(template="chatml", max_len=160, packing=True)
    ctok = task.prepare_tokenizer(tok)
    model = task.build_model(_gpt(tok.vocab_size, block=160, **arch), ctok)
    convs = [CONV, CONV[1:3], [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "今天天气很好。"}]]
    feats = [task.encode({"id": str(i), "messages": c}, ctok) for i, c in enumerate(convs)]
    assert sum(len(f["input_ids"]) for f in feats) <= 160
    packed = task.collate(feats, ctok)
    assert packed["input_ids"].shape[0] == 1 and int(packed["segment_ids"].max()) == 3
    loss_packed, n_packed = task.loss(model, packed)
    task.cfg.packing = False
    alone = [task.loss(model, task.collate([f], ctok)) for f in feats]
    assert n_packed == sum(n for _, n in alone) == task.count(packed)
    assert torch.allclose(loss_packed, sum(loss for loss, _ in alone), rtol=1e-5, atol=1e-4)
    # per-example sums from a packed batch match too (evaluation's statistics)
    task.cfg.packing, task.cfg.generate = True, False
    preds = task.predict(model, packed, ctok, feats)
    assert [p["tokens"] for p in preds] == [n for _, n in alone]
    assert all(abs(p["nll"] - float(loss.detach())) < 1e-3 for p, (loss, _) in zip(preds, alone))


def test_packed_conversations_do_not_see_each_other(tok):
    model = _gpt(tok.vocab_size)
    a, b = tok.encode("Hello there! How are you"), tok.encode("It is sunny and warm")
    seg = torch.tensor([[1] * len(a) + [2] * len(b)])
    pos = torch.tensor([list(range(len(a))) + list(range(len(b)))])
    other = tok.encode("Once upon a time a cat")[: len(a)]
    other += a[len(other):]
    with torch.no_grad():
        x = packed_logits(model, torch.tensor([a + b]), seg, pos)
        y = packed_logits(model, torch.tensor([other + b]), seg, pos)
        alone = model(torch.tensor([b]))[0]
    assert torch.allclose(x[0, len(a):], y[0, len(a):], atol=1e-5)  # b ignores what precedes it
    assert torch.allclose(x[0, len(a):], alone[0], atol=1e-5)
    assert pack_rows([5, 3, 4, 2], 7) == [[0, 3], [2, 1]]


def test_build_model_resizes_embeddings_to_the_mean_and_round_trips(tok, tmp_path):
    from lmforge.models.io import load_model, save_model

    task = _task(template="chatml", max_len=64)
    ctok = task.prepare_tokenizer(tok)
    body = _gpt(tok.vocab_size)
    old = body.wte.weight.detach().clone()
    model = task.build_model(body, ctok)
    V = ctok.vocab_size
    assert model.wte.weight.shape[0] == V == model.config.vocab_size and model.lm_head.weight is model.wte.weight
    assert torch.equal(model.wte.weight[: old.shape[0]], old)
    assert torch.allclose(model.wte.weight[old.shape[0]:], old.mean(0).expand(2, -1))
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert torch.equal(again.wte.weight, model.wte.weight)
    with pytest.raises(ConfigError, match="max_len=128 exceeds the model's context"):
        _task(max_len=128).build_model(_gpt(tok.vocab_size), tok)
    from lmforge.models.bert import BERT, BertConfig

    with pytest.raises(ConfigError, match="fine-tunes a decoder"):
        _task().build_model(BERT(BertConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=32)), tok)


@pytest.mark.slow  # importing transformers takes ~20 s on the shared CPUs
def test_imported_gpt2_loss_matches_transformers(tok, tmp_path):
    """A tiny random transformers GPT-2 through import_hf + the chat task: same loss as transformers
    after its embeddings grow the same way (mean rows) on the same assistant-only labels."""
    transformers = pytest.importorskip("transformers")
    from lmforge.tasks.stage import load_body

    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=tok.vocab_size, n_positions=64, n_embd=32,
                                                              n_layer=2, n_head=2)).eval()
    hf.save_pretrained(tmp_path / "gpt2", safe_serialization=True)
    tok.save(tmp_path / "gpt2")
    task = _task(template="chatml", max_len=64)
    ctok = task.prepare_tokenizer(tok)
    model = task.build_model(load_body(tmp_path / "gpt2"), ctok).eval()
    batch = task.collate([task.encode({"id": "0", "messages": CONV}, ctok)], ctok)
    ours, n = task.loss(model, batch)
    with torch.no_grad():
        emb = hf.get_input_embeddings().weight
        mean = emb.mean(0)
        hf.resize_token_embeddings(ctok.vocab_size)
        hf.get_input_embeddings().weight[tok.vocab_size:] = mean
        logits = hf(batch["input_ids"]).logits
    theirs = F.cross_entropy(logits.view(-1, logits.size(-1)), batch["labels"].view(-1), reduction="sum")
    assert n > 0 and torch.allclose(ours, theirs, rtol=1e-4)


# -- end to end --------------------------------------------------------------------------------


def _body_dir(tmp_path, tok, block=64):
    from lmforge.models.io import save_model

    tok.save(tmp_path / "tokfiles")
    save_model(_gpt(tok.vocab_size) if block == 64 else GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=block,
                                                                       n_layer=1, n_head=2, d_model=32)),
               tmp_path / "body", extra_files=sorted((tmp_path / "tokfiles").iterdir()))
    return tmp_path / "body"


def test_finetune_then_evaluate_cli_and_predict(tok, tmp_path):
    from lmforge.cli import main
    from lmforge.tasks.predict import predict_texts
    from lmforge.tasks.stage import FinetuneConfig, run

    convs = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
             for q, a in [("Hello there!", "How are you today?"), ("What is the weather like?", "It is sunny."),
                          ("Tell me a story.", "Once upon a time a cat sat on a mat.")]] * 6
    data = _jsonl(tmp_path / "chat.jsonl", [{"messages": c} for c in convs])
    cfg = FinetuneConfig.model_validate({
        "task": {"kind": "chat", "max_len": 64, "packing": True, "max_new_tokens": 12},
        "data": {"train": str(data), "val": str(data)},
        "train": {"max_steps": 40, "batch_size": 6, "lr": 3e-3, "warmup_steps": 5, "eval_every": 20,
                  "group_by_length": False}})
    result = run(cfg, _body_dir(tmp_path, tok), tmp_path / "ft", progress=False)
    assert result.metrics["task"] == "chat" and "val_loss" in result.metrics["pretrained"]
    model_dir = tmp_path / "ft" / "pretrained" / "model"
    assert json.loads((model_dir / "chat_template.json").read_text())["name"] == "chatml"
    assert json.loads((model_dir / "config.json").read_text())["vocab_size"] == tok.vocab_size + 2
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--output", str(out),
                 "--bootstrap", "100"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "chat" and m["n"] == len(convs)
    assert m["loss"] < 0.6 * math.log(ctok_size := tok.vocab_size + 2), (m, ctok_size)  # well below chance
    assert abs(m["perplexity"] - math.exp(m["loss"])) < 1e-3 * m["perplexity"]
    lo, hi = m["ci"]["loss"]
    assert lo <= m["loss"] <= hi
    assert "chrf" in m["details"] and m["details"]["target_tokens"] > 0
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert set(preds[0]) >= {"id", "reference", "reply", "nll", "tokens"}
    assert preds[0]["reference"] == "How are you today?"
    # the loss over the test file, recomputed here from the model's logits on the assistant tokens only
    from lmforge.tasks.stage import load_task_model

    task, model, ctok = load_task_model(model_dir)
    total, count = 0.0, 0
    for c in convs:
        ids, mask = ctok.render_chat(c)
        with torch.no_grad():
            logits = model(torch.tensor([ids[:-1]]))[0][0]
        nll = F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
        keep = torch.tensor(mask[1:]).bool()
        total += float(nll[keep].sum())
        count += int(keep.sum())
    assert abs(total / count - m["loss"]) < 1e-4
    pred = predict_texts(model_dir, ["Hello there!"])[0]
    assert isinstance(pred["reply"], str) and "<|im_end|>" not in pred["reply"]
    assert "nll" not in pred  # a raw input has no reference reply to score


def test_finetune_rejects_max_len_over_the_context(tok, tmp_path):
    from lmforge.tasks.stage import FinetuneConfig, run

    data = _jsonl(tmp_path / "c.jsonl", [{"messages": CONV}] * 4)
    cfg = FinetuneConfig.model_validate({"task": {"kind": "chat", "max_len": 256},
                                         "data": {"train": str(data), "val": str(data)},
                                         "train": {"max_steps": 1, "batch_size": 2}})
    with pytest.raises(ConfigError, match="set finetune.task.max_len to at most 64"):
        run(cfg, _body_dir(tmp_path, tok), tmp_path / "ft", progress=False)


# -- lmforge chat --------------------------------------------------------------------------------


def test_incremental_text_keeps_characters_and_stop_markers_whole(tok):
    from lmforge.tasks.chat_cli import IncrementalText

    ids = tok.encode("你好，今天天气很好。It is sunny")
    out = IncrementalText(tok, ["### User:"])
    pieces = [out.add(i) for i in ids] + [out.finish()]
    assert "".join(pieces) == tok.decode(ids) and not any("\ufffd" in p for p in pieces)
    ids = tok.encode("Fine. ### User: more")
    out = IncrementalText(tok, ["### User:"])
    shown = []
    for i in ids:
        shown.append(out.add(i))
        assert "#" not in "".join(shown)  # a stop marker's start is held back, never printed
    assert "".join(shown) + out.finish() == "Fine. " and out.stopped


def test_chat_repl_streams_resets_and_exits(tok, tmp_path):
    import typer
    from typer.testing import CliRunner

    from lmforge.tasks.chat_cli import ChatSession, chat, load_chat_model, repl

    body = _body_dir(tmp_path, _task(template="chatml").prepare_tokenizer(tok))
    app = typer.Typer()
    app.command()(chat)
    res = CliRunner().invoke(app, ["--model", str(body), "--system", "Be kind.", "--temperature", "0",
                                   "--max-new-tokens", "8"], input="Hello there!\n/reset\n\nHi again\n/exit\nignored\n")
    assert res.exit_code == 0, res.output
    assert res.output.count("assistant> ") == 2 and "(history cleared)" in res.output
    model, ctok = load_chat_model(body)
    from lmforge.models.generate import SamplingConfig, generate

    session = ChatSession(model, ctok, "Be kind.", SamplingConfig(max_new_tokens=8, temperature=0))
    pieces = list(session.reply("Hello there!"))
    # the streamed pieces are the greedy reply, decoded whole
    ids = ctok.chat_prompt([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello there!"}])
    greedy = generate(model, ids, SamplingConfig(max_new_tokens=8, temperature=0,
                                                 eos_token_id=ctok.chat_stop_ids[0]))
    assert "".join(pieces) == ctok.decode(greedy).split("<|im_end|>")[0].split("<|endoftext|>")[0]
    assert [m["role"] for m in session.messages] == ["system", "user", "assistant"]
    # a long history stays within the context: the prompt never exceeds block_size - max_new_tokens
    for _ in range(12):
        list(session.reply("Tell me a story about a cat, please."))
    assert len(session.prompt_ids()) <= model.config.block_size - session.cfg.max_new_tokens
    assert ctok.decode(session.prompt_ids()).startswith("<|im_start|>system\nBe kind.")
    out = io.StringIO()
    assert repl(session, io.StringIO("/nosuch\nHello\n"), out, interactive=False) == 1
    assert "unknown command /nosuch" in out.getvalue()
    # a classifier directory is refused with a clear message
    (tmp_path / "clf").mkdir()
    (tmp_path / "clf" / "task.json").write_text('{"kind": "classification"}')
    with pytest.raises(InputError, match="not a chat model"):
        load_chat_model(tmp_path / "clf")
