"""SPIRAL-mini items: seeded, the key sentence where recorded, distractors that also occur in the fillers."""

from collections import Counter

import pytest

from replbook.data.spiral_mini import make_items, vocabulary


def test_items_are_reproducible_and_record_the_key_sentence():
    items = make_items(50, seed=3)
    assert [i.text for i in items] == [i.text for i in make_items(50, seed=3)]
    assert [i.text for i in items] != [i.text for i in make_items(50, seed=4)]
    for item in items:
        key = item.sentences[item.key_index]
        answer = item.choices[item.answer]
        subject = item.question.lower().split(" the ", 1)[1].split()[0]
        assert answer in key and subject in key  # the key sentence binds the asked subject to the answer
        assert len(set(item.choices)) == 4
        others = [s for j, s in enumerate(item.sentences) if j != item.key_index]
        for k, choice in enumerate(item.choices):
            if k != item.answer:
                assert any(choice in s for s in others)  # every distractor also occurs in a filler
        assert not any(answer in s and subject in s for s in others)
        assert len(item.speakers) == len(item.sentences)
        # the key sentence shares the most words with the question (SPIRAL's questions are written about it)
        question = set(item.question.lower().rstrip("?").split())
        overlap = [len(question & set(s.split())) for s in item.sentences]
        assert overlap[item.key_index] == max(overlap) and overlap.count(max(overlap)) == 1


def test_answer_positions_and_key_positions_are_spread():
    items = make_items(400, seed=0)
    assert min(Counter(i.answer for i in items).values()) > 60  # about 100 each
    positions = Counter(i.key_index for i in items)
    assert len(positions) >= 10 and positions[1] < 60
    assert {i.passage_type for i in items} == {"lecture", "meeting", "conversation"}
    assert len(vocabulary(items)) < 500  # a closed vocabulary


def test_too_few_fillers_is_refused():
    with pytest.raises(ValueError, match="n_fillers"):
        make_items(1, seed=0, n_fillers=2)
