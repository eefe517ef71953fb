"""Personalized reward model by Variational Preference Learning (VPL, Poddar et al. 2024).

A user is a latent z inferred from a few of their labelled pairs:

* pair encoder: MLP([e(x,y_c); e(x,y_r)]) for each context pair, averaged over the context;
  ``context_attention=True`` adds the paper's self-attention layer across the context pairs
  (residual) before the mean. Measured on the review world's conflicting users (the
  personalized test's set-up, bag-of-words features): with it the latent was ignored (0.43/0.57
  and 0.47/0.53 concise/verbose accuracy on conflict pairs, init seeds 0, 1) while the mean
  alone reached 0.88–0.99 (seeds 0–2), so the mean is the default;
* heads give μ and log σ², clamped to [−1, 1]; z = μ + σ·ε, renormalised to ‖z‖ = √d
  (the authors' code); at evaluation z = μ (renormalised the same way);
* decoder r(x, y | z) = MLP([e(x,y); z]); likelihood σ(r(y_c|z) − r(y_r|z));
* loss = BT negative log-likelihood + ``kl_weight`` · KL(N(μ, σ²) ‖ N(0, I))
  (:func:`prefloop.objectives.vpl_loss`; trained by ``train/vpl.py``).

Embeddings e(x, y) come from a frozen backbone (last hidden state at the last token and the
mean over response tokens), computed once, so the personalized head trains in seconds on a CPU.
With ``personalized=False`` the same module is a plain Bradley–Terry head on the same features
(z = 0, no KL): the fair single-RM baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from prefloop.data.records import Comparison, Prompt
from prefloop.models.policy import Policy

Embedder = Callable[[Sequence[Prompt], Sequence[str]], torch.Tensor]


def backbone_embedder(policy: Policy, batch_size: int = 128) -> Embedder:
    """Frozen features of a causal LM: [last-token state; mean response state], shape [B, 2h]."""

    @torch.no_grad()
    def embed(prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        policy.model.eval()
        out = []
        for i in range(0, len(prompts), batch_size):
            batch = policy.encode(prompts[i : i + batch_size], responses[i : i + batch_size])
            batch = batch.to(policy.device)
            hidden = policy.model.model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask
            ).last_hidden_state
            last = batch.attention_mask.sum(-1) - 1
            final = hidden[torch.arange(len(last)), last]
            mask = batch.response_mask.unsqueeze(-1).float()
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)
            out.append(torch.cat([final, mean], -1).float().cpu())
        return torch.cat(out)

    return embed


#: An extra feature of a (prompt, response words) pair that the word counts cannot see.
PromptFeature = Callable[[Prompt, list[str]], float]


def bag_of_words_embedder(
    vocabulary: Sequence[str], scale: float = 24.0, prompt_feature: PromptFeature | None = None
) -> Embedder:
    """Word counts / ``scale`` over a fixed vocabulary, plus ``prompt_feature`` if given.

    A cheap, model-free embedder for tests and for separating the latent-user mechanism from
    the quality of a backbone's features. The prompt feature (a world's, e.g. "the response
    mentions what the prompt asked for") is the last column.
    """
    index = {w: i for i, w in enumerate(vocabulary)}
    extra = 1 if prompt_feature is not None else 0

    def embed(prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        features = torch.zeros(len(responses), len(index) + extra)
        for row, (prompt, response) in enumerate(zip(prompts, responses)):
            words = response.split()
            for word in words:
                if word in index:
                    features[row, index[word]] += 1.0 / scale
            if prompt_feature is not None:
                features[row, -1] = float(prompt_feature(prompt, words))
        return features

    return embed


class VPLRewardModel(nn.Module):
    """Reward r(e | z) with z inferred from context pairs; see the module docstring."""

    def __init__(
        self,
        dim: int,
        latent_dim: int = 8,
        hidden: int = 64,
        personalized: bool = True,
        context_attention: bool = False,
    ):
        super().__init__()
        self.latent_dim, self.personalized = latent_dim, personalized
        act = nn.LeakyReLU(0.2)
        self.pair_encoder = nn.Sequential(
            nn.Linear(2 * dim, hidden), act, nn.Linear(hidden, hidden)
        )
        self.context_attention = (
            nn.MultiheadAttention(hidden, num_heads=4, batch_first=True)
            if context_attention
            else None
        )
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(dim + latent_dim, hidden), act, nn.Linear(hidden, 1))

    def posterior(
        self, context_chosen: torch.Tensor, context_rejected: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """μ, log σ² from context pairs [U, C, d] (one row of C pairs per user)."""
        pairs = self.pair_encoder(torch.cat([context_chosen, context_rejected], -1))
        if self.context_attention is not None:
            pairs = pairs + self.context_attention(pairs, pairs, pairs, need_weights=False)[0]
        h = pairs.mean(1)
        return self.mu(h).clamp(-1, 1), self.logvar(h).clamp(-1, 1)

    def latent(self, mu: torch.Tensor, logvar: torch.Tensor, sample: bool) -> torch.Tensor:
        if not self.personalized:
            return torch.zeros_like(mu)
        z = mu + torch.exp(logvar / 2) * torch.randn_like(mu) if sample else mu
        return z * (self.latent_dim**0.5) / z.norm(dim=-1, keepdim=True).clamp_min(1e-6)

    def reward(self, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """r for features [N, d] under latents [N, k]."""
        return self.decoder(torch.cat([features, z], -1)).squeeze(-1)

    def forward(
        self,
        chosen: torch.Tensor,
        rejected: torch.Tensor,
        context_chosen: torch.Tensor,
        context_rejected: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rewards of target pairs [N, d] under latents sampled from their users' contexts
        [N, C, d]: (r(chosen | z), r(rejected | z), μ, log σ²) for :func:`vpl_loss`.
        """
        mu, logvar = self.posterior(context_chosen, context_rejected)
        z = self.latent(mu, logvar, sample=True)
        return self.reward(chosen, z), self.reward(rejected, z), mu, logvar


@torch.no_grad()
def personalized_scorer(
    model: VPLRewardModel, embed: Embedder, context: Sequence[Comparison]
) -> Callable[[Sequence[Prompt], Sequence[str]], torch.Tensor]:
    """r(x, y | z = μ(context)): the reward for the user who labelled ``context``."""
    model.eval()
    prompts = [c.prompt for c in context]
    chosen = embed(prompts, [c.chosen for c in context]).unsqueeze(0)
    rejected = embed(prompts, [c.rejected for c in context]).unsqueeze(0)
    z = model.latent(*model.posterior(chosen, rejected), sample=False)

    @torch.no_grad()
    def score(prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        features = embed(list(prompts), list(responses))
        return model.reward(features, z.expand(len(features), -1))

    return score
