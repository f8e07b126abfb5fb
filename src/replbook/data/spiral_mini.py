"""SPIRAL-mini: seeded SPIRAL-like items for the SpeechPrune chapter (Lin et al. 2025 build SPIRAL from GPT-4o
transcripts; this is a templated stand-in from a closed vocabulary).

Each item is a lecture, meeting or conversation passage of filler sentences with one key sentence at a random
position. The key sentence binds a subject to a fact of one type (a place, a day, a number, a colour, an object); the
question asks for that fact with four choices. The three distractors are facts of the same type that also occur in
filler sentences, bound to other subjects in other statements, so the choices alone do not give the answer away; the
key sentence is the one that answers the question, and it shares the most words with it, as in SPIRAL, where the
question is written about the key sentence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

PASSAGE_TYPES = ("lecture", "meeting", "conversation")
SUBJECTS = ("the committee", "the lab", "the museum", "the library", "the team", "the school", "the council",
            "the studio", "the clinic", "the garden club", "the choir", "the archive", "the workshop", "the bakery")
FACTS = {
    "place": ("in the north hall", "near the river", "at the old station", "beside the market", "on the top floor",
              "behind the theatre", "in the east wing", "under the bridge"),
    "day": ("on monday", "on tuesday", "on wednesday", "on thursday", "on friday", "on saturday", "on sunday"),
    "number": ("twelve", "fifteen", "twenty", "thirty", "forty", "sixty", "ninety", "seventy"),
    "colour": ("red", "blue", "green", "yellow", "purple", "orange", "silver", "brown"),
    "object": ("a piano", "a telescope", "a bicycle", "a lantern", "a kettle", "a compass", "a camera", "a violin"),
}
# (statement, question) templates per fact type: {s} subject, {f} fact
TEMPLATES = {
    "place": ("{s} will meet {f} this season", "Where will {s} meet this season?"),
    "day": ("{s} opens its doors {f} each week", "On which day does {s} open its doors each week?"),
    "number": ("{s} ordered {f} new chairs last month", "How many new chairs did {s} order last month?"),
    "colour": ("{s} painted the front door {f} this spring", "What colour did {s} paint the front door?"),
    "object": ("{s} bought {f} for the new room", "What did {s} buy for the new room?"),
}
# other statements that mention a fact of the same type (where the distractors occur)
MENTIONS = {
    "place": ("{s} moved its office {f} last year", "{s} held a small party {f}", "{s} keeps old boxes {f}"),
    "day": ("{s} cleans the windows {f}", "{s} takes photographs {f}", "{s} sends letters {f}"),
    "number": ("{s} invited {f} guests to dinner", "{s} planted {f} trees near the road", "{s} sold {f} tickets"),
    "colour": ("{s} chose {f} paper for the posters", "{s} wears {f} shirts at events", "{s} printed {f} flyers"),
    "object": ("{s} lost {f} during the trip", "{s} repaired {f} after the storm", "{s} borrowed {f} from a friend"),
}
OPENERS = {
    "lecture": ("today we look at how local groups plan their year", "let us start with a few facts about the town",
                "this part of the course is about community life"),
    "meeting": ("thanks everyone for joining the weekly update", "let us go through the notes from last week",
                "we have a short agenda today"),
    "conversation": ("did you hear the news from the neighbourhood", "i was talking to a friend about the town",
                     "so much has changed around here lately"),
}
NOISE = ("that was all planned a long time ago", "people seemed quite happy about it", "nobody expected the weather",
         "we will come back to that later", "it took a while to agree on the details", "the budget was tight again",
         "several members asked for more time", "the local paper wrote a short story about it")


@dataclass
class Item:
    passage_type: str
    sentences: list[str]
    key_index: int
    question: str
    choices: list[str]
    answer: int  # index into choices
    fact_type: str
    speakers: list[int] = field(default_factory=list)  # one speaker id per sentence

    @property
    def text(self) -> str:
        return ". ".join(self.sentences) + "."


def make_item(rng: random.Random, n_fillers: int = 12) -> Item:
    """One item: ``n_fillers`` filler sentences (statements about other subjects and plain noise) and one key
    sentence at a uniformly drawn position."""
    if n_fillers < 3:
        raise ValueError(f"n_fillers must be >= 3 so that the three distractors occur in fillers; got {n_fillers}.")
    passage_type = rng.choice(PASSAGE_TYPES)
    fact_type = rng.choice(sorted(FACTS))
    statement, question = TEMPLATES[fact_type]
    subjects = rng.sample(SUBJECTS, 4)
    facts = rng.sample(FACTS[fact_type], 4)  # facts[0] is the answer, the rest distractors
    key = statement.format(s=subjects[0], f=facts[0])
    fillers = [rng.choice(MENTIONS[fact_type]).format(s=s, f=f) for s, f in zip(subjects[1:], facts[1:], strict=True)]
    while len(fillers) < n_fillers:
        other = rng.choice([t for t in sorted(FACTS) if t != fact_type])
        s_other = rng.choice([s for s in SUBJECTS if s != subjects[0]])
        fillers.append(TEMPLATES[other][0].format(s=s_other, f=rng.choice(FACTS[other])) if rng.random() < 0.6
                       else rng.choice(NOISE))
    rng.shuffle(fillers)
    key_index = rng.randrange(len(fillers) + 1)
    sentences = [rng.choice(OPENERS[passage_type]), *fillers[:key_index], key, *fillers[key_index:]]
    order = rng.sample(range(4), 4)
    choices = [facts[i] for i in order]
    n_speakers = 1 if passage_type == "lecture" else 2 if passage_type == "conversation" else 3
    speakers = [rng.randrange(n_speakers) for _ in sentences]
    return Item(passage_type, sentences, key_index + 1, question.format(s=subjects[0]).capitalize(), choices,
                order.index(0), fact_type, speakers)


def make_items(n: int, seed: int, n_fillers: int = 12) -> list[Item]:
    """``n`` items from one seed (the same seed gives the same items)."""
    rng = random.Random(seed)
    return [make_item(rng, n_fillers) for _ in range(n)]


def vocabulary(items: list[Item]) -> list[str]:
    """The sorted word list of the items' passages, questions and choices."""
    words = set()
    for item in items:
        for text in (*item.sentences, item.question, *item.choices):
            words.update(text.lower().replace("?", " ").split())
    return sorted(words)
