"""PCH: the twin towers of LEARN (paper section 3.2).

The user tower projects each history item's input embedding (frozen content embedding, or a learned
ID embedding for the ID baseline) to the model width, adds learned positions, runs a causal transformer
and maps every position through output linear layers to an L2-normalised user embedding.

Item towers (paper Fig. 3):
- Variant 1 (default): the same weights and causal attention over the target sequence;
- Variant 2: the same weights, each item attending only to itself;
- Variant 3: the content embedding itself is the item embedding, standardised per dimension as the towers
  read it (raw mean-pooled decoder states are anisotropic: every item scores almost alike) and normalised;
- `id_table` (the SASRec-style model): the learned input ID embedding is the item embedding.
At inference every variant embeds one item alone, so an item never seen in training gets an embedding
from its text.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from learn_embed.config import PchConfig

InputKind = Literal["content", "id"]


def content_scaling(content: torch.Tensor, content_norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) that the model subtracts from and divides the raw content embeddings by: per dimension
    over the catalog for `standardize`, (0, 1) for `none`. The exported towers apply the same."""
    content = content.float()
    if content_norm == "standardize":
        return content.mean(0), content.std(0).clamp(min=1e-6)
    return torch.zeros(content.shape[1]), torch.ones(content.shape[1])


class ItemInput(nn.Module):
    """Item index -> input vector: a frozen content matrix or a learned ID table (index -1 is padding)."""

    def __init__(
        self,
        kind: InputKind,
        num_items: int,
        content: torch.Tensor | None,
        id_dim: int,
        content_norm: str = "none",
        tied: bool = False,
    ) -> None:
        super().__init__()
        self.kind = kind
        if kind == "content":
            if content is None:
                raise ValueError("content input needs a content embedding matrix")
            content = content.float()
            if content_norm == "standardize":
                mean, std = content_scaling(content, content_norm)
                content = (content - mean) / std
            self.register_buffer("content", content, persistent=False)
            self.dim = content.shape[1]
        else:
            # A small table, as the output embeddings of `id_table` want (Adam turns small normalised rows
            # quickly), read into the tower at sqrt(dim) times its scale (the Transformer's embedding
            # scaling): at 0.02 behind the projection's bias every item looked alike at initialisation
            # (mean pairwise cosine 0.97) and the ID towers sat at popularity level for epochs.
            self.table = nn.Embedding(num_items, id_dim)
            nn.init.normal_(self.table.weight, std=0.02)
            # tied: the rows enter as they are, SASRec's exact tying of input and output embeddings
            self.input_scale = 1.0 if tied else float(id_dim) ** 0.5
            self.dim = id_dim

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        safe = index.clamp(min=0)
        return self.content[safe] if self.kind == "content" else self.table(safe) * self.input_scale


def attention_mask(length: int, mode: Literal["causal", "self"], device: torch.device) -> torch.Tensor:
    """Boolean mask, True where attention is NOT allowed (PyTorch convention)."""
    i = torch.arange(length, device=device)
    if mode == "causal":
        return i[None, :] > i[:, None]
    return i[None, :] != i[:, None]


class SequenceTower(nn.Module):
    """Projection + learned positions + transformer + output layers -> normalised embeddings per position."""

    def __init__(self, in_dim: int, config: PchConfig, project: bool = True) -> None:
        super().__init__()
        if not project and in_dim != config.width:
            raise ValueError(f"an unprojected input needs its dim ({in_dim}) == width ({config.width})")
        self.projection: nn.Module = nn.Linear(in_dim, config.width) if project else nn.Identity()
        self.positions = nn.Embedding(config.max_len, config.width)
        nn.init.normal_(self.positions.weight, std=0.02)
        post = config.norm == "post"
        # SASRec normalises the input sum; pre-norm blocks need a last LayerNorm instead
        self.input_norm = nn.LayerNorm(config.width) if post else nn.Identity()
        self.input_dropout = nn.Dropout(config.input_dropout) if config.input_dropout else nn.Identity()
        layer = nn.TransformerEncoderLayer(
            config.width,
            config.heads,
            config.ffn_multiplier * config.width,
            config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=not post,
        )
        self.transformer = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.Identity() if post else nn.LayerNorm(config.width)
        head: list[nn.Module] = []
        for _ in range(config.output_layers - 1):
            head += [nn.Linear(config.width, config.width), nn.GELU()]
        if config.output_layers:
            head.append(nn.Linear(config.width, config.out_dim))
        elif config.out_dim != config.width:
            raise ValueError(f"output_layers 0 needs out_dim ({config.out_dim}) == width ({config.width})")
        self.head = nn.Sequential(*head)
        self.out_dim = config.out_dim
        self.max_len = config.max_len
        self.normalize = config.normalize

    def encode(
        self, inputs: torch.Tensor, mode: Literal["causal", "self"] = "causal", causal_hint: bool = False
    ) -> torch.Tensor:
        """inputs [batch, length, in_dim] (right-padded) -> [batch, length, out_dim] before normalisation.
        No key-padding mask is needed: with right padding a real position only sees real positions.
        `causal_hint` tells the transformer the mask is causal (the exporter needs it; training does not)."""
        length = inputs.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len {self.max_len}")
        positions = self.positions(torch.arange(length, device=inputs.device))
        hidden = self.input_dropout(self.input_norm(self.projection(inputs) + positions))
        hint = {"is_causal": True} if causal_hint else {}
        hidden = self.transformer(hidden, mask=attention_mask(length, mode, inputs.device), **hint)
        return self.head(self.norm(hidden))

    def forward(self, inputs: torch.Tensor, mode: Literal["causal", "self"] = "causal") -> torch.Tensor:
        """Per-position embeddings, L2-normalised unless the config scores by dot product."""
        out = self.encode(inputs, mode)
        return nn.functional.normalize(out, dim=-1) if self.normalize else out


class LearnModel(nn.Module):
    def __init__(self, config: PchConfig, num_items: int, content: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        self.num_items = num_items
        tied = config.tied_input  # PchConfig allows it with input: id only
        self.item_input = ItemInput(config.input, num_items, content, config.width, config.content_norm, tied)
        out_dim = config.out_dim
        if config.item_tower == "variant3":
            out_dim = self.item_input.dim  # the user embedding must live in the content space
        elif config.item_tower == "id_table":
            out_dim = config.width
        tower_config = PchConfig(**{**config.__dict__, "out_dim": out_dim})
        self.user_tower = SequenceTower(self.item_input.dim, tower_config, project=not tied)
        if config.input == "id" and not tied:  # no shared offset that drowns the small ID rows at initialisation
            nn.init.zeros_(self.user_tower.projection.bias)

    @property
    def dim(self) -> int:
        return self.user_tower.out_dim

    def user_embeddings(self, history: torch.Tensor) -> torch.Tensor:
        """history item indices [batch, length] (-1 = padding) -> [batch, length, dim]."""
        return self.user_tower(self.item_input(history), "causal")

    def target_embeddings(self, target: torch.Tensor) -> torch.Tensor:
        """Item embeddings of a target sequence in training: [batch, length] -> [batch, length, dim]."""
        tower = self.config.item_tower
        if tower == "variant1":
            return self.user_tower(self.item_input(target), "causal")
        if tower == "variant2":
            return self.user_tower(self.item_input(target), "self")
        if tower == "variant3":  # the content as the tower reads it (standardised unless content_norm: none)
            return nn.functional.normalize(self.item_input.content[target.clamp(min=0)], dim=-1)
        table = self.item_input.table(target.clamp(min=0))
        return nn.functional.normalize(table, dim=-1) if self.config.normalize else table

    def item_embeddings(self, items: torch.Tensor) -> torch.Tensor:
        """Inference: each item alone (a sequence of one) -> [n, dim]."""
        return self.target_embeddings(items.reshape(-1, 1))[:, 0]
