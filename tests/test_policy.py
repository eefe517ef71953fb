import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from prefloop.models.packing import PADDING, pack_pairs
from prefloop.models.padding_free import supports_padding_free, unpadded_hidden_states
from prefloop.models.policy import HEAD_CHUNK, HEAD_KEEP_BYTES, Policy, head_logps
from prefloop.models.reward import RewardModel
from prefloop.train.engine import checkpoint_activations

PROMPTS = [
    "write a review of the kettle that mentions the price .",
    "write a review of the lamp that mentions the color .",
    "write a review of the tent that mentions the size .",
]
RESPONSES = ["the kettle is great .", "i love it . the color is nice . the lamp is good .", ""]


def naive_logp(model, tokenizer, prompt: str, response: str) -> float:
    """One sequence at a time, no padding, straight from the definition."""
    prompt_ids = tokenizer(prompt).input_ids
    response_ids = tokenizer(response, add_special_tokens=False).input_ids + [
        tokenizer.eos_token_id
    ]
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    return sum(
        logprobs[len(prompt_ids) + k - 1, token].item() for k, token in enumerate(response_ids)
    )


def test_batched_padded_logps_equal_one_at_a_time(tiny_model_dir):
    policy = Policy.from_pretrained(tiny_model_dir, device="cpu")
    summed, lengths = policy.sequence_logps(PROMPTS, RESPONSES)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    expected = torch.tensor(
        [naive_logp(model, tokenizer, p, r) for p, r in zip(PROMPTS, RESPONSES)],
        dtype=torch.float64,
    )
    assert torch.allclose(summed.double(), expected, atol=1e-5)
    assert lengths.tolist() == [6.0, 15.0, 1.0]  # words + EOS; the empty response is just EOS


def test_per_token_logps_are_zero_outside_the_response(tiny_model_dir):
    policy = Policy.from_pretrained(tiny_model_dir, device="cpu")
    batch = policy.encode(PROMPTS, RESPONSES)
    with torch.no_grad():
        per_token = policy.token_logps(batch)
    outside = batch.response_mask[:, 1:] == 0
    assert torch.all(per_token[outside] == 0)
    assert torch.all(per_token[~outside] < 0)


def test_generate_gives_k_samples_per_prompt_and_is_seeded(tiny_model_dir):
    policy = Policy.from_pretrained(tiny_model_dir, device="cpu")
    first = policy.generate(PROMPTS, num_samples=3, max_new_tokens=8, seed=4)
    again = policy.generate(PROMPTS, num_samples=3, max_new_tokens=8, seed=4)
    other = policy.generate(PROMPTS, num_samples=3, max_new_tokens=8, seed=5)
    assert [len(group) for group in first] == [3, 3, 3]
    assert first == again
    assert first != other
    assert all(len(text.split()) <= 8 for group in first for text in group)


def test_greedy_generation_matches_argmax_decoding(tiny_model_dir):
    policy = Policy.from_pretrained(tiny_model_dir, device="cpu")
    [[greedy]] = policy.generate(PROMPTS[:1], temperature=0.0, max_new_tokens=5)
    ids = policy.tokenizer(PROMPTS[0]).input_ids
    words = []
    with torch.no_grad():
        for _ in range(5):
            next_id = policy.model(torch.tensor([ids])).logits[0, -1].argmax().item()
            if next_id == policy.tokenizer.eos_token_id:
                break
            ids.append(next_id)
            words.append(policy.tokenizer.convert_ids_to_tokens(next_id))
    assert greedy == " ".join(words)


def test_reward_model_round_trips_through_the_hf_directory(tiny_model_dir, tmp_path):
    reward_model = RewardModel.from_pretrained(tiny_model_dir, device="cpu", seed=3)
    scores = reward_model.score(PROMPTS, RESPONSES)
    reward_model.save_pretrained(tmp_path / "rm")
    reloaded = RewardModel.from_pretrained(tmp_path / "rm", device="cpu")
    assert scores.shape == (3,)
    assert torch.allclose(reloaded.score(PROMPTS, RESPONSES), scores, atol=1e-6)


def test_reward_is_read_at_the_last_response_token(tiny_model_dir):
    reward_model = RewardModel.from_pretrained(tiny_model_dir, device="cpu", seed=3)
    alone = reward_model.score(PROMPTS[:1], RESPONSES[:1])
    padded = reward_model.score(PROMPTS[:2], RESPONSES[:2])[:1]  # batched with a longer row
    assert torch.allclose(alone, padded, atol=1e-5)


# ---- packed pairs: the prompt once, chosen and rejected in one row ----------------------
CHOSEN = ["the kettle is great .", "the color is nice .", ""]
REJECTED = ["i love it . the kettle is bad .", "", "the tent is small ."]


def test_packed_pair_logps_equal_one_sequence_at_a_time(tiny_model_dir):
    policy = Policy.from_pretrained(tiny_model_dir, device="cpu")
    batch = pack_pairs(policy.tokenize(PROMPTS, CHOSEN, REJECTED), policy.tokenizer.pad_token_id)
    with torch.no_grad():
        chosen, rejected = policy.pair_logps(batch)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for got, responses in ((chosen, CHOSEN), (rejected, REJECTED)):
        expected = [naive_logp(model, tokenizer, p, r) for p, r in zip(PROMPTS, responses)]
        assert got.tolist() == pytest.approx(expected, abs=1e-5)
    assert batch.chosen_lengths.tolist() == [6.0, 6.0, 1.0]  # words + EOS
    assert batch.rejected_lengths.tolist() == [10.0, 1.0, 6.0]


def test_the_rejected_response_does_not_see_the_chosen_one(tiny_model_dir):
    policy = Policy.from_pretrained(tiny_model_dir, device="cpu")
    pad = policy.tokenizer.pad_token_id
    with torch.no_grad():
        _, rejected = policy.pair_logps(pack_pairs(policy.tokenize(PROMPTS, CHOSEN, REJECTED), pad))
        other = ["the lamp is fine .", "good", "the price is low . i love it ."]
        _, same = policy.pair_logps(pack_pairs(policy.tokenize(PROMPTS, other, REJECTED), pad))
    assert same.tolist() == pytest.approx(rejected.tolist(), abs=1e-5)


def test_packed_gradients_equal_unpacked_ones(tiny_model_dir):
    policy = Policy.from_pretrained(tiny_model_dir, device="cpu")
    batch = pack_pairs(policy.tokenize(PROMPTS, CHOSEN, REJECTED), policy.tokenizer.pad_token_id)
    chosen, rejected = policy.pair_logps(batch)
    (chosen - 2 * rejected).sum().backward()
    packed = [p.grad.clone() for p in policy.model.parameters()]
    policy.model.zero_grad()
    unpacked = policy.token_logps(policy.encode(PROMPTS * 2, CHOSEN + REJECTED)).sum(-1)
    (unpacked[:3] - 2 * unpacked[3:]).sum().backward()
    for a, b in zip(packed, (p.grad for p in policy.model.parameters())):
        assert torch.allclose(a, b, atol=1e-5)


def test_packed_rewards_equal_one_row_per_response(tiny_model_dir):
    reward_model = RewardModel.from_pretrained(tiny_model_dir, seed=0, heads=2)
    rows = reward_model.tokenize(PROMPTS, CHOSEN, REJECTED)
    with torch.no_grad():
        chosen, rejected = reward_model.pair_rewards(
            pack_pairs(rows, reward_model.tokenizer.pad_token_id)
        )
        expected = reward_model.score(PROMPTS * 2, CHOSEN + REJECTED)
    assert torch.allclose(torch.cat([chosen, rejected]), expected, atol=1e-5)
    assert chosen.shape == (3, 2)


# ---- padding-free pairs: the model runs on the batch's real tokens only ------------------
def _eager_twin(policy: Policy, tiny_model_dir) -> Policy:
    """The same weights attending eagerly: packed pairs keep their padded rows there."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    return Policy(model, policy.tokenizer)


def test_padding_free_pairs_equal_padded_rows_with_gradients(tiny_model_dir):
    policy = Policy.from_pretrained(tiny_model_dir, device="cpu")
    padded = _eager_twin(policy, tiny_model_dir)
    assert supports_padding_free(policy.model) and not supports_padding_free(padded.model)
    batch = pack_pairs(policy.tokenize(PROMPTS, CHOSEN, REJECTED), policy.tokenizer.pad_token_id)
    assert (batch.segments == PADDING).sum() > 0  # the batch has padding to leave out
    grads = []
    for model in (policy, padded):
        chosen, rejected = model.pair_logps(batch)
        (chosen - 2 * rejected).sum().backward()
        grads.append([p.grad for p in model.model.parameters()])
        sums = torch.cat([chosen, rejected]).detach()
        grads[-1].append(sums)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5)


def test_padding_free_runs_under_gradient_checkpointing(tiny_model_dir):
    policy = Policy.from_pretrained(tiny_model_dir, device="cpu")
    batch = pack_pairs(policy.tokenize(PROMPTS, CHOSEN, REJECTED), policy.tokenizer.pad_token_id)
    chosen, _ = policy.pair_logps(batch)
    chosen.sum().backward()
    plain = [p.grad.clone() for p in policy.model.parameters()]
    policy.model.zero_grad()
    checkpoint_activations(policy.model)
    policy.model.train()
    chosen, _ = policy.pair_logps(batch)  # the recompute in backward goes through SDPA again
    chosen.sum().backward()
    for a, p in zip(plain, policy.model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-5)


def test_padding_free_hidden_states_are_zero_at_padding(tiny_model_dir):
    policy = Policy.from_pretrained(tiny_model_dir, device="cpu")
    batch = pack_pairs(policy.tokenize(PROMPTS, CHOSEN, REJECTED), policy.tokenizer.pad_token_id)
    with torch.no_grad():
        hidden = unpadded_hidden_states(
            policy.model, batch.input_ids, batch.position_ids, batch.segments
        )
        padded = _eager_twin(policy, tiny_model_dir)
        reference = padded.final_hidden_states(**padded.packed_inputs(batch))
    real = batch.segments != PADDING
    assert hidden.shape == reference.shape
    assert torch.allclose(hidden[real], reference[real], atol=1e-5)
    assert hidden[~real].abs().max() == 0


def test_padding_free_right_padded_rows_equal_padded_rows_with_gradients(tiny_model_dir):
    policy = Policy.from_pretrained(tiny_model_dir, device="cpu")
    padded = _eager_twin(policy, tiny_model_dir)
    batch = policy.encode(PROMPTS, RESPONSES)
    assert (batch.attention_mask == 0).sum() > 0
    found = []
    for model in (policy, padded):
        logps = model.token_logps(batch)
        (logps * torch.arange(logps.shape[1])).sum().backward()  # every position weighs in
        found.append([logps.detach()] + [p.grad for p in model.model.parameters()])
    for a, b in zip(*found):
        assert torch.allclose(a, b, atol=1e-5)


def test_chunked_recomputed_head_equals_one_kept_product(tiny_model_dir):
    policy = Policy.from_pretrained(tiny_model_dir, device="cpu")
    batch = pack_pairs(policy.tokenize(PROMPTS, CHOSEN, REJECTED), policy.tokenizer.pad_token_id)
    head = policy.model.get_output_embeddings()
    found = []
    for chunk, keep_bytes in ((HEAD_CHUNK, HEAD_KEEP_BYTES), (5, 0)):  # kept; 5-token chunks
        hidden = policy.packed_hidden_states(batch, logits_to_keep=1)
        logps = head_logps(hidden, head, batch.scored, chunk=chunk, keep_bytes=keep_bytes)
        (logps * torch.arange(len(logps))).sum().backward()
        found.append([logps.detach()] + [p.grad.clone() for p in policy.model.parameters()])
        policy.model.zero_grad()
    assert len(batch.scored.labels) > 5  # more than one chunk
    for a, b in zip(*found):
        assert torch.allclose(a, b, atol=1e-5)
