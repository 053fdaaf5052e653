"""One decision per presentation: the hysteresis rule."""

from kiosk.decoder import Code
from kiosk.presentation import PresentationFilter

A = Code(raw=b"A", text="A", corners=((0, 0), (1, 0), (1, 1), (0, 1)))
A_MOVED = Code(raw=b"A", text="A", corners=((5, 5), (6, 5), (6, 6), (5, 6)))
B = Code(raw=b"B", text="B", corners=((0, 0), (1, 0), (1, 1), (0, 1)))


def frames(filter_, codes_per_frame, fps=15.0, start=100.0):
    """Feed frames; return the payloads decided on each frame."""
    decided = []
    for i, codes in enumerate(codes_per_frame):
        decided.append([c.raw for c in filter_.new_presentations(codes, start + i / fps)])
    return decided


def test_code_held_in_view_for_ten_seconds_is_decided_once():
    f = PresentationFilter(hysteresis_s=2.0)
    decided = frames(f, [[A]] * 150)
    assert sum(len(d) for d in decided) == 1
    assert decided[0] == [b"A"]


def test_decoder_missing_the_code_for_a_few_frames_is_not_a_new_presentation():
    f = PresentationFilter(hysteresis_s=2.0)
    decided = frames(f, [[A]] * 10 + [[]] * 20 + [[A_MOVED]] * 10)  # 1.3 s gap
    assert sum(len(d) for d in decided) == 1


def test_code_shown_again_after_leaving_view_longer_than_hysteresis_is_decided_again():
    f = PresentationFilter(hysteresis_s=2.0)
    decided = frames(f, [[A]] * 10 + [[]] * 40 + [[A]] * 10)  # 2.7 s gap
    assert [d for d in decided if d] == [[b"A"], [b"A"]]


def test_two_codes_in_view_are_each_decided_once():
    f = PresentationFilter(hysteresis_s=2.0)
    decided = frames(f, [[A, B]] * 30 + [[B, A]] * 30)
    assert [d for d in decided if d] == [[b"A", b"B"]]


def test_the_same_code_twice_in_one_frame_is_one_presentation():
    f = PresentationFilter(hysteresis_s=2.0)
    assert [c.raw for c in f.new_presentations([A, A_MOVED], 1.0)] == [b"A"]
