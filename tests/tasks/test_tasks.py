"""Prompt datasets and metrics for patching: IOI generation, corruptions, JSONL pairs, metrics.

Fast tests use the tiny models' tokenizer (ten single-token names); the two slow tests check on
SmolLM2 that the model does IOI and the shipped example pairs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import interp
from interp import Add, TokenBatch
from interp.tasks import (
    METRICS,
    NormalisationError,
    PatchingTask,
    TaskError,
    UnknownMetricError,
    embedding_std,
    get_metric,
    ioi_task,
    ioi_vocabulary,
    normalise,
    pairs_from_jsonl,
)
from interp.tasks import ioi
from interp.tokenize import encode

EXAMPLE_PAIRS = Path(__file__).resolve().parents[2] / "data" / "pairs_example.jsonl"


@pytest.fixture(scope="module")
def llama() -> interp.Model:
    return interp.load_model("tiny-llama")


def token_lists(batch: TokenBatch) -> list[list[int]]:
    return [ids[mask.bool()].tolist() for ids, mask in zip(batch.input_ids, batch.attention_mask, strict=True)]


# --- IOI generation -------------------------------------------------------------------------


def test_vocabulary_falls_back_to_tiny_tokenizer(llama: interp.Model) -> None:
    vocab = ioi_vocabulary(llama)
    assert set(vocab.names) == set(interp.models.tiny.NAMES)
    assert vocab.places and vocab.objects
    assert all(len(encode(llama.tokenizer, " " + word)) == 1 for word in vocab.names + vocab.places + vocab.objects)


def test_ioi_is_deterministic_given_seed(llama: interp.Model) -> None:
    for corruption in ("abc", "symmetric", "noise"):
        a, b = ioi_task(llama, 12, seed=3, corruption=corruption), ioi_task(llama, 12, seed=3, corruption=corruption)
        assert a.clean_prompts == b.clean_prompts and a.corrupt_prompts == b.corrupt_prompts
        assert torch.equal(a.clean.input_ids, b.clean.input_ids) and torch.equal(a.answers, b.answers)
        for x, y in zip(a.corrupt_interventions, b.corrupt_interventions, strict=True):
            assert torch.equal(x.vector, y.vector)
    assert ioi_task(llama, 12, seed=4).clean_prompts != ioi_task(llama, 12, seed=3).clean_prompts
    # the replacement names have their own stream: one seed, the same clean prompts for every corruption
    for corruption in ("abc", "symmetric", "noise"):
        assert ioi_task(llama, 12, seed=3, corruption=corruption).clean_prompts == a.clean_prompts


@pytest.mark.parametrize("order", ["ABBA", "BABA", "mixed"])
def test_ioi_structure(llama: interp.Model, order: str) -> None:
    task = ioi_task(llama, 16, seed=1, order=order)
    assert len(task) == 16 and task.name == "ioi-abc"
    expected = [order] * 16 if order != "mixed" else ["ABBA", "BABA"] * 8
    assert task.examples["order"] == expected
    for row, (prompt, ids) in enumerate(zip(task.clean_prompts, token_lists(task.clean), strict=True)):
        io, s = task.examples["io"][row], task.examples["s"][row]
        assert io != s
        assert int(task.answers[row]) == llama.token_id(" " + io)
        assert int(task.wrong[row]) == llama.token_id(" " + s)
        assert ids.count(int(task.answers[row])) == 1 and ids.count(int(task.wrong[row])) == 2
        first_io, first_s = ids.index(int(task.answers[row])), ids.index(int(task.wrong[row]))
        assert (first_io < first_s) == (expected[row] == "ABBA")
        assert prompt.endswith(" to") and prompt.count(f" {s} ") + prompt.count(f" {s},") >= 2
        assert [ids[p] for p in task.examples["name_positions"][row]] == [
            llama.token_id(" " + n) for n in ((io, s, s) if expected[row] == "ABBA" else (s, io, s))
        ]


@pytest.mark.parametrize("corruption", ["abc", "symmetric", "noise"])
def test_ioi_pairs_aligned_single_token_answers(llama: interp.Model, corruption: str) -> None:
    task = ioi_task(llama, 20, seed=2, corruption=corruption)
    assert task.clean.shape == task.corrupt.shape
    assert torch.equal(task.clean.attention_mask, task.corrupt.attention_mask)
    for clean, corrupt in zip(token_lists(task.clean), token_lists(task.corrupt), strict=True):
        assert len(clean) == len(corrupt)
    for text, token in zip(task.examples["answer"] + task.examples["wrong"], torch.cat([task.answers, task.wrong])):
        assert encode(llama.tokenizer, text) == [int(token)]


def test_abc_uses_three_other_names(llama: interp.Model) -> None:
    task = ioi_task(llama, 24, seed=5, corruption="abc")
    for row in range(len(task)):
        replaced = task.examples["corrupt_names"][row].split()
        assert len(set(replaced)) == 3
        assert not set(replaced) & {task.examples["io"][row], task.examples["s"][row]}
        clean, corrupt = task.clean.input_ids[row], task.corrupt.input_ids[row]
        width = clean.shape[0]
        differ = (clean != corrupt).nonzero().flatten().tolist()
        assert differ == [width + p for p in task.examples["name_positions"][row]]
        assert [llama.tokenizer.decode([int(corrupt[p])]) for p in differ] == [" " + n for n in replaced]


def test_symmetric_swaps_io_and_s(llama: interp.Model) -> None:
    task = ioi_task(llama, 16, seed=6, corruption="symmetric")
    for row in range(len(task)):
        io, s = task.examples["io"][row], task.examples["s"][row]
        words = task.clean_prompts[row].replace(",", " ,").split()
        assert task.corrupt_prompts[row].replace(",", " ,").split() == [{io: s, s: io}.get(w, w) for w in words]
        clean, corrupt = task.clean.input_ids[row], task.corrupt.input_ids[row]
        io_id, s_id = int(task.answers[row]), int(task.wrong[row])
        assert torch.equal(corrupt == s_id, clean == io_id) and torch.equal(corrupt == io_id, clean == s_id)
    assert task.examples["answer"] == [" " + io for io in task.examples["io"]]


def test_noise_touches_only_name_positions_with_documented_std(llama: interp.Model) -> None:
    task = ioi_task(llama, 32, seed=7, corruption="noise")
    assert torch.equal(task.corrupt.input_ids, task.clean.input_ids) and task.corrupt_prompts == task.clean_prompts
    (noise,) = task.corrupt_interventions
    assert isinstance(noise, Add) and noise.site == "hook_embed" and noise.scale == 1.0
    n, width = task.clean.shape
    assert noise.vector.shape == (n, width, llama.dims.d_model)
    names = torch.zeros(n, width, dtype=torch.bool)
    for row, positions in enumerate(task.examples["name_positions"]):
        names[row, [width + p for p in positions]] = True
    touched = noise.vector.abs().sum(dim=-1) > 0
    assert torch.equal(touched, names)
    weight_std = float(llama.hf.get_input_embeddings().weight.detach().double().std())
    assert embedding_std(llama) == pytest.approx(weight_std, rel=1e-9)
    assert task.meta["noise_std"] == pytest.approx(3 * weight_std, rel=1e-9)
    drawn = noise.vector[names]
    assert float(drawn.std()) == pytest.approx(3 * weight_std, rel=0.05)
    assert abs(float(drawn.mean())) < 0.05 * 3 * weight_std
    # in a forward, the embeddings change exactly at the name positions
    _, clean_cache = llama.run_with_cache(task.clean, sites=["hook_embed"])
    _, noised_cache = llama.run_with_cache(task.corrupt, sites=["hook_embed"], interventions=task.corrupt_interventions)
    changed = (noised_cache["hook_embed"] != clean_cache["hook_embed"]).any(dim=-1)
    assert torch.equal(changed, names)


def test_failed_draws_are_redrawn_deterministically(llama: interp.Model, monkeypatch: pytest.MonkeyPatch) -> None:
    original = ioi._name_positions

    def refuse_mary(model: interp.Model, example: ioi.IOIExample) -> list[int] | None:
        involved = {example.io, example.s, *example.corrupt_names}
        return None if "Mary" in involved else original(model, example)

    monkeypatch.setattr(ioi, "_name_positions", refuse_mary)
    first, second = ioi_task(llama, 30, seed=0), ioi_task(llama, 30, seed=0)
    assert len(first) == 30 and first.meta["draws"] > 30
    assert first.clean_prompts == second.clean_prompts
    assert not any("Mary" in p for p in first.clean_prompts + first.corrupt_prompts)
    monkeypatch.setattr(ioi, "_name_positions", lambda model, example: None)
    with pytest.raises(TaskError, match="0 of 3 IOI prompts tokenised aligned"):
        ioi_task(llama, 3)


def test_too_few_names_and_fallback_words(llama: interp.Model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ioi, "NAMES", ("Mary", "John", "Alice", "Zbigniewqx"))
    with pytest.raises(TaskError, match="needs 5 distinct single-token names, but only 3"):
        ioi_task(llama, 4, corruption="abc")
    assert len(ioi_task(llama, 4, corruption="symmetric")) == 4
    monkeypatch.setattr(ioi, "NAMES", ("Mary", "Zbigniewqx"))
    with pytest.raises(TaskError, match="needs 2 distinct single-token names, but only 1"):
        ioi_task(llama, 4, corruption="noise")
    monkeypatch.setattr(ioi, "NAMES", interp.models.tiny.NAMES)
    monkeypatch.setattr(ioi, "OBJECTS", ("xylophone", "quokkaplushie"))  # no single-token object
    vocab = ioi_vocabulary(llama)
    lengths = {word: len(encode(llama.tokenizer, " " + word)) for word in ioi.OBJECTS}
    assert vocab.objects == tuple(w for w in ioi.OBJECTS if lengths[w] == min(lengths.values()))
    assert len(ioi_task(llama, 6, corruption="abc")) == 6


def test_bad_arguments(llama: interp.Model) -> None:
    with pytest.raises(TaskError, match="unknown corruption 'blur'"):
        ioi_task(llama, 4, corruption="blur")  # type: ignore[arg-type]
    with pytest.raises(TaskError, match="unknown order"):
        ioi_task(llama, 4, order="AABB")  # type: ignore[arg-type]
    with pytest.raises(TaskError, match="at least 1"):
        ioi_task(llama, 0)


# --- the task object ------------------------------------------------------------------------


def test_subset_to_and_frame() -> None:
    model = interp.load_model("tiny-llama", dtype=torch.float64)
    task = ioi_task(model, 10, seed=8, corruption="noise")
    rows = [7, 2, 5]
    part = task.subset(rows)
    assert len(part) == 3 and part.clean_prompts == [task.clean_prompts[i] for i in rows]
    assert part.examples["io"] == [task.examples["io"][i] for i in rows]
    full = model.run(task.corrupt, task.corrupt_interventions)[:, -1]
    sub = model.run(part.corrupt, part.corrupt_interventions)[:, -1]
    torch.testing.assert_close(sub, full[rows], rtol=0, atol=1e-10)
    assert torch.equal(task.subset(slice(0, 4)).answers, task.answers[:4])
    assert torch.equal(task.subset(torch.arange(10) % 3 == 0).wrong, task.wrong[::3])
    moved = task.to("cpu")
    assert moved.answers.device.type == "cpu" and moved.corrupt_interventions[0].vector.device.type == "cpu"
    frame = task.to_frame()
    assert len(frame) == 10
    assert {"clean", "corrupt", "answer", "wrong", "answer_id", "wrong_id", "io", "s", "order"} <= set(frame)
    assert frame["answer"].tolist() == [" " + io for io in task.examples["io"]]


def test_inconsistent_task_is_refused(llama: interp.Model) -> None:
    task = ioi_task(llama, 4)
    with pytest.raises(TaskError, match="4 clean prompts"):
        PatchingTask(
            "bad", task.clean_prompts, task.corrupt_prompts, task.clean, task.corrupt, task.answers[:3], task.wrong
        )
    other = llama.to_tokens(["a b c d e f g h i j k l m n o p q r s t u v w x y z"] * 4)
    with pytest.raises(TaskError, match="differ in shape"):
        PatchingTask("bad", task.clean_prompts, task.corrupt_prompts, task.clean, other, task.answers, task.wrong)


# --- JSONL pairs ----------------------------------------------------------------------------

GOOD = {
    "clean": "When Mary and John went to the store, John gave a drink to",
    "corrupt": "When Alice and Bob went to the store, Tom gave a drink to",
    "answer": " Mary",
    "wrong": " John",
}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pairs_from_jsonl(llama: interp.Model, tmp_path: Path) -> None:
    second = {**GOOD, "clean": "Then, Kate and Paul went to the park. Paul gave a book to", "answer": " Kate",
              "corrupt": "Then, Anna and Sarah went to the park. James gave a book to", "wrong": " Paul"}
    path = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD), "", json.dumps(second)])
    task = pairs_from_jsonl(llama, path)
    assert task.name == "pairs" and len(task) == 2 and task.examples["line"] == [1, 3]
    assert task.answers.tolist() == [llama.token_id(" Mary"), llama.token_id(" Kate")]
    assert task.wrong.tolist() == [llama.token_id(" John"), llama.token_id(" Paul")]
    assert pairs_from_jsonl(llama, path, name="mine").name == "mine"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"line 2: not valid JSON"),
        ("[1, 2]", r"line 2: expected a JSON object"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "wrong"}), r"line 2: field 'wrong': Field required"),
        (json.dumps({**GOOD, "extra": 1}), r"line 2: field 'extra': Extra inputs are not permitted"),
        (json.dumps({**GOOD, "answer": 5}), r"line 2: field 'answer': Input should be a valid string"),
        (json.dumps({**GOOD, "clean": "  "}), r"line 2: field 'clean': Value error, must be a non-empty string"),
        (json.dumps({**GOOD, "answer": " Mary John"}), r"line 2: field 'answer': ' Mary John' is 2 tokens"),
        (json.dumps({**GOOD, "wrong": " Mary"}), r"line 2: field 'wrong' equals 'answer'"),
        (json.dumps({**GOOD, "corrupt": "When Alice and Bob went to the store, Tom gave a drink"}),
         r"line 2: field 'corrupt' is \d+ tokens but 'clean' is \d+"),
    ],
)
def test_pairs_errors_name_line_and_field(llama: interp.Model, tmp_path: Path, line: str, message: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(GOOD), line])
    with pytest.raises(TaskError, match=message):
        pairs_from_jsonl(llama, path)


def test_pairs_file_errors(llama: interp.Model, tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="does not exist"):
        pairs_from_jsonl(llama, tmp_path / "missing.jsonl")
    with pytest.raises(TaskError, match="has no examples"):
        pairs_from_jsonl(llama, write_lines(tmp_path / "empty.jsonl", ["", "  "]))


# --- metrics --------------------------------------------------------------------------------


@pytest.fixture
def hand_task() -> PatchingTask:
    batch = TokenBatch.from_ids(torch.tensor([[1, 2], [1, 2]]))
    return PatchingTask("hand", ["a", "b"], ["c", "d"], batch, batch, torch.tensor([3, 0]), torch.tensor([0, 3]))


def test_metrics_match_hand_computation(hand_task: PatchingTask) -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, math.log(3.0)]], dtype=torch.float64)
    log_z0 = math.log(math.e + math.e**2 + math.e**3 + math.e**4)
    expected = {
        "logit_diff": [3.0, -math.log(3.0)],
        "logprob": [4.0 - log_z0, -math.log(6.0)],
        "prob": [math.exp(4.0 - log_z0), 1 / 6],
    }
    for name, values in expected.items():
        torch.testing.assert_close(get_metric(name)(logits, hand_task), torch.tensor(values, dtype=torch.float64))
    assert get_metric("prob")(logits, hand_task)[0].item() == pytest.approx(0.6439142598879722)
    assert set(METRICS) == {"logit_diff", "logprob", "prob"}
    half = get_metric("logprob")(logits.to(torch.bfloat16), hand_task)
    assert half.dtype == torch.float32


def test_metric_errors(hand_task: PatchingTask) -> None:
    names = r"\['logit_diff', 'logprob', 'prob'\]"
    with pytest.raises(UnknownMetricError, match=rf"unknown metric 'ld'; choose one of {names}"):
        get_metric("ld")
    with pytest.raises(ValueError, match="final-position logits"):
        get_metric("logit_diff")(torch.zeros(2, 3, 4), hand_task)


def test_normalise() -> None:
    clean, corrupt = torch.tensor([2.0, 4.0]), torch.tensor([0.0, 0.0])
    values = torch.tensor([1.0, 3.0])
    torch.testing.assert_close(normalise(values, clean, corrupt), torch.tensor([1 / 3, 1.0]))
    torch.testing.assert_close(normalise(values, clean, corrupt, per_example=True), torch.tensor([0.5, 0.75]))
    grid = torch.tensor([[1.0, 2.0, 0.0], [3.0, 4.0, 0.0]])
    expected = torch.tensor([[0.5, 1.0, 0.0], [0.75, 1.0, 0.0]])
    torch.testing.assert_close(normalise(grid, clean, corrupt, per_example=True), expected)
    clean, corrupt = torch.tensor([2.3, -0.7, 5.1]), torch.tensor([0.4, 0.9, -1.3])
    assert torch.equal(normalise(clean, clean, corrupt, per_example=True), torch.ones(3))
    assert torch.equal(normalise(corrupt, clean, corrupt, per_example=True), torch.zeros(3))
    assert normalise(clean.mean(), clean, corrupt).item() == 1.0
    assert normalise(corrupt.mean(), clean, corrupt).item() == 0.0
    assert normalise(clean, clean, corrupt).mean().item() == pytest.approx(1.0, abs=1e-6)


def test_normalise_refuses_zero_gap() -> None:
    with pytest.raises(NormalisationError, match="equal for the batch means"):
        normalise(torch.tensor([1.0]), torch.tensor([1.0, 3.0]), torch.tensor([3.0, 1.0]))
    with pytest.raises(NormalisationError, match=r"equal for examples \[1\]"):
        normalise(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 3.0]), torch.tensor([0.0, 3.0]), per_example=True)


# --- the real model -------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm_does_ioi(smollm: interp.Model) -> None:
    """Measured (seed 0): IO > S on 24/24 prompts, mean LD 5.0 clean vs ~0 on ABC (seeds 1, 2: 23/24)."""
    task = ioi_task(smollm, 24, seed=0, corruption="abc")
    assert len(ioi_vocabulary(smollm).names) >= 40
    logit_diff = get_metric("logit_diff")
    clean = logit_diff(smollm.run(task.clean)[:, -1], task)
    corrupt = logit_diff(smollm.run(task.corrupt)[:, -1], task)
    assert (clean > 0).float().mean() >= 0.9
    assert clean.mean() > 3.0 and corrupt.mean().abs() < 1.0


@pytest.mark.slow
def test_smollm_example_pairs(smollm: interp.Model) -> None:
    task = pairs_from_jsonl(smollm, EXAMPLE_PAIRS)
    logit_diff = get_metric("logit_diff")
    assert (logit_diff(smollm.run(task.clean)[:, -1], task) > 0).all()
    assert (logit_diff(smollm.run(task.corrupt)[:, -1], task) < 0).all()
