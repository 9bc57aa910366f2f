import pytest
import torch

from learn_embed.config import PchConfig
from learn_embed.pch import LearnModel


def model(tower="variant1", input="content", dropout=0.0, content_dim=12, n_items=30):
    torch.manual_seed(0)
    content = torch.nn.functional.normalize(torch.randn(n_items, content_dim), dim=-1)
    config = PchConfig(
        width=16, layers=2, heads=2, dropout=dropout, max_len=16, out_dim=8, input=input, item_tower=tower
    )
    return LearnModel(config, n_items, content if input == "content" else None).eval(), content


def test_user_tower_is_causal_and_normalised():
    m, _ = model()
    history = torch.tensor([[1, 2, 3, 4, -1], [5, 6, -1, -1, -1]])
    out = m.user_embeddings(history)
    assert out.shape == (2, 5, 8)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2, 5))
    changed = history.clone()
    changed[0, 3] = 9
    out2 = m.user_embeddings(changed)
    torch.testing.assert_close(out[0, :3], out2[0, :3])  # earlier positions do not see a later item
    assert not torch.allclose(out[0, 3], out2[0, 3])
    # padding after a row's end does not change its real positions
    torch.testing.assert_close(m.user_embeddings(torch.tensor([[5, 6]]))[0], out[1, :2])


def test_variant1_target_sequence_is_causal_and_inference_embeds_items_alone():
    m, _ = model("variant1")
    target = torch.tensor([[3, 4, 5]])
    seq = m.target_embeddings(target)
    alone = m.item_embeddings(torch.tensor([3, 4, 5]))
    torch.testing.assert_close(seq[0, 0], alone[0])  # the first target sees only itself
    assert not torch.allclose(seq[0, 1], alone[1])  # later targets see earlier ones in training


def test_variant2_items_attend_only_to_themselves():
    m, _ = model("variant2")
    seq = m.target_embeddings(torch.tensor([[3, 4, 5]]))
    swapped = m.target_embeddings(torch.tensor([[9, 4, 7]]))
    torch.testing.assert_close(seq[0, 1], swapped[0, 1])  # neighbours do not matter
    assert not torch.allclose(seq[0, 1], m.item_embeddings(torch.tensor([4]))[0])  # position does


def test_variant3_uses_the_content_embedding():
    m, content = model("variant3")
    assert m.dim == 12
    standardised = (content - content.mean(0)) / content.std(0)
    torch.testing.assert_close(
        m.item_embeddings(torch.tensor([2, 7])), torch.nn.functional.normalize(standardised[[2, 7]], dim=-1)
    )
    assert m.user_embeddings(torch.tensor([[1, 2]])).shape == (1, 2, 12)


def test_id_models():
    m, _ = model("variant1", input="id")
    assert m.item_embeddings(torch.arange(30)).shape == (30, 8)
    s, _ = model("id_table", input="id")
    torch.testing.assert_close(
        s.item_embeddings(torch.tensor([4])), torch.nn.functional.normalize(s.item_input.table.weight[[4]], dim=-1)
    )


def test_config_rules():
    with pytest.raises(ValueError, match="variant3 needs input: content"):
        PchConfig(input="id", item_tower="variant3")
    with pytest.raises(ValueError, match="not divisible"):
        PchConfig(width=10, heads=3)


def test_id_items_are_distinct_at_initialisation():
    """A 0.02-std ID table behind the projection's bias made every item embedding alike (mean pairwise
    cosine 0.97): ID models then sat at popularity level for epochs. Read in at sqrt(dim) times its scale
    through a bias-free projection, the same small table starts the items apart."""
    torch.manual_seed(0)
    m = LearnModel(PchConfig(input="id", dropout=0.1), 500).eval()
    with torch.no_grad():
        e = m.item_embeddings(torch.arange(500))
    cosine = e @ e.T
    mean_off_diagonal = float((cosine.sum() - 500) / (500 * 499))
    assert mean_off_diagonal < 0.5
    assert abs(float(m.item_input.table.weight.std()) - 0.02) < 0.002  # small rows: fast-turning outputs


def test_dot_product_scoring_keeps_the_norms():
    torch.manual_seed(0)
    config = PchConfig(
        width=16,
        layers=1,
        heads=2,
        dropout=0.0,
        max_len=8,
        out_dim=8,
        input="id",
        item_tower="id_table",
        normalize=False,
    )
    m = LearnModel(config, 10).eval()
    torch.testing.assert_close(m.item_embeddings(torch.tensor([3])), m.item_input.table.weight[[3]])
    norms = m.user_embeddings(torch.tensor([[1, 2, 3]])).norm(dim=-1)
    assert not torch.allclose(norms, torch.ones_like(norms))


def test_tied_input_reads_the_output_table_itself():
    """SASRec's tying: the user tower's input at a position is the item's own output row plus its position
    (then the input LayerNorm), with no projection or scaling in between."""
    torch.manual_seed(0)
    config = PchConfig(
        width=8,
        layers=1,
        heads=2,
        dropout=0.0,
        max_len=4,
        out_dim=8,
        input="id",
        item_tower="id_table",
        norm="post",
        output_layers=0,
        tied_input=True,
    )
    model = LearnModel(config, 6)
    tower, history = model.user_tower, torch.tensor([[3, 1]])
    hidden = tower.input_norm(model.item_input.table.weight[history] + tower.positions.weight[:2])
    expected = tower.transformer(hidden, mask=torch.triu(torch.ones(2, 2, dtype=torch.bool), 1))
    torch.testing.assert_close(model.user_embeddings(history), torch.nn.functional.normalize(expected, dim=-1))
    torch.testing.assert_close(
        model.item_embeddings(torch.tensor([3])),
        torch.nn.functional.normalize(model.item_input.table.weight[[3]], dim=-1),
    )
    with pytest.raises(ValueError, match="tied_input needs input: id"):
        PchConfig(tied_input=True)
