"""labkit.bias and its chart: the bootstrap against a hand-worked case, scipy and its nominal coverage; the fill-mask
probe against labkit.pretraining.fill_mask; the sentiment probe against labkit.finetune.predict_sentence; the lab's
template sets; every bad input answered with one clear error."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import nn

from labkit.bias import (IDENTITY_GROUPS, IDENTITY_TERMS, NAME_GROUPS, NO_TERM, OCCUPATIONS, PRONOUN_TEMPLATES,
                         PRONOUNS, SENTIMENT_TEMPLATES, GapEstimate, bootstrap_ci, counterfactual_scores,
                         estimate_gaps, mask_log_probs, positive_probabilities, pronoun_gaps, sentiment_gaps,
                         single_token_id)
from labkit.finetune import predict_sentence
from labkit.models import BertConfig, TinyBERT
from labkit.pretraining import fill_mask
from labkit.viz.bias import CLEAR, UNCLEAR, gap_figure

pytestmark = pytest.mark.usefixtures("packaged_models_only")


@pytest.fixture(scope="module")
def tokenizer(packaged_tokenizer):
    return packaged_tokenizer


@pytest.fixture(scope="module")
def tiny_bert(tokenizer):
    torch.manual_seed(0)
    return TinyBERT(BertConfig(vocab_size=tokenizer.vocab_size, max_len=32, n_layer=1, n_head=2, d_model=16)).eval()


@pytest.fixture(scope="module")
def classifier(tokenizer):
    from transformers import BertConfig as HFBertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(HFBertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16,
                                                      num_hidden_layers=1, num_attention_heads=2,
                                                      intermediate_size=32, num_labels=2)).eval()


# ---------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_of_two_values_by_hand() -> None:
    """Resamples of [0, 2] average 0, 1 or 2 with probabilities 1/4, 1/2, 1/4: the 2.5% and 97.5% quantiles of 2000
    resample means are 0 and 2, and the 30%–70% interval is (1, 1)."""
    assert bootstrap_ci([0.0, 2.0], 2000, 0.95, seed=0) == (1.0, 0.0, 2.0)
    assert bootstrap_ci([0.0, 2.0], 2000, 0.4, seed=0)[1:] == (1.0, 1.0)


def test_bootstrap_agrees_with_scipy_percentile_interval() -> None:
    values = stats.expon.rvs(size=15, random_state=1)  # skewed, so the interval is not symmetric
    mean, low, high = bootstrap_ci(torch.tensor(values), 20_000, 0.9, seed=0)
    theirs = stats.bootstrap((values,), lambda x: x.mean(), n_resamples=20_000, confidence_level=0.9,
                             method="percentile", random_state=0).confidence_interval
    se = values.std() / math.sqrt(len(values))
    assert mean == pytest.approx(values.mean(), abs=1e-12)
    assert abs(low - theirs.low) < 0.05 * se and abs(high - theirs.high) < 0.05 * se
    assert high - mean > mean - low  # right-skewed data: the percentile interval leans right


def test_bootstrap_covers_the_true_mean_at_about_the_nominal_rate() -> None:
    generator = torch.Generator().manual_seed(7)
    samples = 0.5 + torch.randn(400, 25, generator=generator, dtype=torch.float64)  # 400 data sets, true mean 0.5
    covered = [low <= 0.5 <= high for _, low, high in (bootstrap_ci(s, 1000, 0.9, seed=i)
                                                        for i, s in enumerate(samples))]
    rate = sum(covered) / len(covered)
    # the percentile interval runs a little short at n = 25; ±3 binomial standard errors of 400 draws is ±0.045
    assert 0.84 <= rate <= 0.93, rate


def test_bootstrap_of_a_constant_sample_has_zero_width_and_seeds_repeat() -> None:
    assert bootstrap_ci([0.25] * 6, 500, 0.95, seed=3) == (0.25, 0.25, 0.25)
    values = torch.randn(10, generator=torch.Generator().manual_seed(0))
    assert bootstrap_ci(values, 300, 0.95, seed=1) == bootstrap_ci(values, 300, 0.95, seed=1)
    assert bootstrap_ci(values, 300, 0.95, seed=1) != bootstrap_ci(values, 300, 0.95, seed=2)
    assert bootstrap_ci([4.0], 10, 0.95)[0] == 4.0  # one value: its mean, zero width


@pytest.mark.parametrize("kwargs, message", [
    (dict(values=[[1.0, 2.0]]), r"one non-empty row of numbers \(n,\), got shape \(1, 2\)"),
    (dict(values=[]), r"one non-empty row of numbers \(n,\), got shape \(0,\)"),
    (dict(values=[1.0, float("nan")]), "a nan or an infinite number"),
    (dict(confidence=1.0), "strictly between 0 and 1"),
    (dict(confidence=95), r"strictly between 0 and 1 \(0.95 for 95%\), got 95"),
    (dict(confidence=True), "strictly between 0 and 1"),
    (dict(n_resamples=0), "n_resamples must be a positive int, got 0"),
    (dict(seed=1.5), "seed must be an int, got 1.5"),
])
def test_bootstrap_refuses_bad_input(kwargs, message) -> None:
    arguments = dict(values=[1.0, 2.0, 3.0], n_resamples=100, confidence=0.95, seed=0) | kwargs
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(**arguments)


def test_estimate_gaps_is_bootstrap_ci_per_row() -> None:
    gaps = {"a": torch.tensor([0.1, 0.3, 0.2]), "b": torch.tensor([-1.0, -2.0, -1.5, -1.0])}
    a, b = estimate_gaps(gaps, n_resamples=400, seed=5)
    assert (a.name, a.n, b.name, b.n) == ("a", 3, "b", 4)
    assert (a.mean, a.low, a.high) == bootstrap_ci(gaps["a"], 400, 0.95, 5)
    assert b.excludes_zero and b.high < 0
    assert not GapEstimate("c", 0.1, -0.2, 0.4, 5).excludes_zero
    with pytest.raises(ValueError, match="gaps is empty"):
        estimate_gaps({})


# ---------------------------------------------------------------------------------------------- fill-mask probe


def test_the_labs_templates_and_words_fit_the_uncased_vocabulary(tokenizer) -> None:
    assert 20 <= len(OCCUPATIONS) <= 30 and len(set(OCCUPATIONS)) == len(OCCUPATIONS)
    assert all(single_token_id(tokenizer, word) for word in OCCUPATIONS + PRONOUNS)
    for template in PRONOUN_TEMPLATES:
        words = template.replace("[MASK]", "")
        assert template.count("{occupation}") == 1 and template.count("[MASK]") == 1 and words == words.lower()
    assert all(t.count("{person}") == 1 and t == t.lower() for t in SENTIMENT_TEMPLATES)
    assert len(NAME_GROUPS["women's names"]) == len(NAME_GROUPS["men's names"])
    assert list(IDENTITY_GROUPS) == [NO_TERM, *IDENTITY_TERMS]


def test_single_token_id_names_the_pieces(tokenizer) -> None:
    assert single_token_id(tokenizer, "she") == tokenizer.convert_tokens_to_ids("she")
    with pytest.raises(ValueError, match=r"'hairdresser' is not one token .*\['hair', '##dre', '##sser'\]"):
        single_token_id(tokenizer, "hairdresser")
    with pytest.raises(ValueError, match="word must be a non-empty str"):
        single_token_id(tokenizer, " ")


def test_pronoun_gaps_equal_fill_masks_probabilities(tiny_bert, tokenizer) -> None:
    occupations, templates = ("nurse", "pilot", "librarian"), PRONOUN_TEMPLATES[:4]
    gaps = pronoun_gaps(tiny_bert, tokenizer, occupations, templates, batch_size=5)  # batches cut across rows
    assert list(gaps) == list(occupations) and all(g.shape == (len(templates),) for g in gaps.values())
    for occupation, j in (("nurse", 0), ("pilot", 3), ("librarian", 2), ("librarian", 3)):
        probs = dict(fill_mask(tiny_bert, tokenizer, templates[j].format(occupation=occupation),
                               top_k=tokenizer.vocab_size))  # every token's probability at the mask
        expected = math.log(probs["he"]) - math.log(probs["she"])
        assert float(gaps[occupation][j]) == pytest.approx(expected, abs=1e-4)


def test_mask_log_probs_takes_a_hugging_face_masked_lm(tokenizer) -> None:
    from transformers import BertConfig as HFBertConfig, BertForMaskedLM

    torch.manual_seed(0)
    hf = BertForMaskedLM(HFBertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=32)).eval()
    texts = ["[MASK] is here .", "the long sentence says that [MASK] left early today ."]
    ids = [tokenizer.convert_tokens_to_ids(w) for w in ("he", "she", "they")]
    got = mask_log_probs(hf, tokenizer, texts, ids)
    for row, text in enumerate(texts):
        enc = tokenizer(text, return_tensors="pt")
        at = enc["input_ids"][0].tolist().index(tokenizer.mask_token_id)
        with torch.no_grad():
            expected = hf(**enc).logits[0, at].log_softmax(-1)[ids]
        torch.testing.assert_close(got[row], expected, atol=1e-5, rtol=0)


def test_fill_mask_probe_refuses_bad_input(tiny_bert, tokenizer) -> None:
    with pytest.raises(ValueError, match=r"exactly one \[MASK\], found 0 in 'no mask'"):
        mask_log_probs(tiny_bert, tokenizer, ["a [MASK] b", "no mask"], [1])
    with pytest.raises(ValueError, match="texts must be a non-empty list of str"):
        mask_log_probs(tiny_bert, tokenizer, "a [MASK] b", [1])
    with pytest.raises(TypeError, match="mask_log_probs needs a model with a masked-LM head"):
        mask_log_probs(nn.Linear(2, 2), tokenizer, ["a [MASK] b"], [1])
    with pytest.raises(ValueError, match=r"must hold \{occupation\} once and \[MASK\] once, got 'the \{occupation\}"):
        pronoun_gaps(tiny_bert, tokenizer, templates=["the {occupation} left ."])
    with pytest.raises(ValueError, match="'hairdresser' is not one token"):
        pronoun_gaps(tiny_bert, tokenizer, pronouns=("he", "hairdresser"))
    with pytest.raises(ValueError, match="pronouns must be two words"):
        pronoun_gaps(tiny_bert, tokenizer, pronouns=("he", "she", "they"))
    with pytest.raises(ValueError, match="occupations must be a non-empty list"):
        pronoun_gaps(tiny_bert, tokenizer, occupations="nurse")


# ---------------------------------------------------------------------------------------------- sentiment probe


def test_positive_probabilities_equal_predict_sentence(classifier, tokenizer) -> None:
    texts = ["emma made me laugh .", "the film was made by my deaf friend and it was long ."]
    got = positive_probabilities(classifier, tokenizer, texts, batch_size=2)  # padded together
    for text, p in zip(texts, got):
        expected = dict(predict_sentence(classifier, tokenizer, text, ["negative", "positive"]))["positive"]
        assert float(p) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match=r"positive must be a label index in 0..1 \(the model gives 2 logits\)"):
        positive_probabilities(classifier, tokenizer, texts, positive=2)


def test_counterfactual_scores_average_each_groups_fillers_per_template(classifier, tokenizer) -> None:
    groups = {"a": ("emma", "mary"), "b": ("john",)}
    templates = SENTIMENT_TEMPLATES[:3]
    scores = counterfactual_scores(classifier, tokenizer, groups, templates, batch_size=4)
    assert list(scores) == ["a", "b"] and all(s.shape == (3,) for s in scores.values())
    for j, template in enumerate(templates):
        each = positive_probabilities(classifier, tokenizer, [template.format(person=f) for f in groups["a"]])
        assert float(scores["a"][j]) == pytest.approx(float(each.mean()), abs=1e-6)
    with pytest.raises(ValueError, match=r"must hold \{person\} once, got 'no slot here'"):
        counterfactual_scores(classifier, tokenizer, groups, ["no slot here"])
    with pytest.raises(ValueError, match="groups is empty"):
        counterfactual_scores(classifier, tokenizer, {})
    with pytest.raises(ValueError, match=r"groups\['b'\] must be a non-empty list of non-empty str"):
        counterfactual_scores(classifier, tokenizer, {"b": ()})


def test_sentiment_gaps_pair_each_group_with_its_reference_template_by_template() -> None:
    groups = [*NAME_GROUPS, *IDENTITY_GROUPS]
    scores = {group: torch.arange(3, dtype=torch.float64) * (i + 1) for i, group in enumerate(groups)}
    gaps = sentiment_gaps(scores)
    assert list(gaps) == ["women's − men's names", *(f"{term} − {NO_TERM}" for term in IDENTITY_TERMS)]
    assert torch.equal(gaps["women's − men's names"], scores["women's names"] - scores["men's names"])
    assert torch.equal(gaps["deaf − no term"], scores["deaf"] - scores[NO_TERM])
    with pytest.raises(ValueError, match=r'scores lacks the groups \["men\'s names"\]'):
        sentiment_gaps({k: v for k, v in scores.items() if k != "men's names"})


# ---------------------------------------------------------------------------------------------- the chart


def test_gap_figure_sorts_rows_and_draws_each_interval() -> None:
    tiny = [GapEstimate("nurse", -0.5, -0.9, -0.1, 10), GapEstimate("pilot", 0.7, 0.2, 1.1, 10),
            GapEstimate("all", 0.1, -0.2, 0.3, 10)]
    other = [GapEstimate("pilot", 0.1, -0.1, 0.2, 10), GapEstimate("all", 0.0, -0.1, 0.1, 10),
             GapEstimate("nurse", 0.2, 0.1, 0.3, 10)]
    fig = gap_figure({"tiny": tiny, "other": other}, title="t", x_title="gap", first="all")
    left, right = fig.data
    assert list(left.y) == ["nurse", "pilot", "all"] == list(right.y)  # by the first panel's gap, "all" on top
    assert list(left.x) == [-0.5, 0.7, 0.1] and list(right.x) == [0.2, 0.1, 0.0]
    assert list(left.error_x.array) == pytest.approx([0.4, 0.4, 0.2])
    assert list(left.error_x.arrayminus) == pytest.approx([0.4, 0.5, 0.3])
    assert list(left.marker.color) == [CLEAR, CLEAR, UNCLEAR] and left.marker.symbol[-1] == "diamond"
    with pytest.raises(ValueError, match="panels is empty"):
        gap_figure({}, title="t", x_title="gap")
    with pytest.raises(ValueError, match="panel 'other' has rows"):
        gap_figure({"tiny": tiny, "other": other[:2]}, title="t", x_title="gap")
    with pytest.raises(ValueError, match="first='overall' is not one of the rows"):
        gap_figure({"tiny": tiny}, title="t", x_title="gap", first="overall")
