"""Progress lines of long loops: silent when short, rate-limited, with the time left."""

from hemasuite.progress_lines import LoopProgress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_short_loops_stay_silent_and_long_ones_say_how_long_is_left():
    clock, lines = Clock(), []
    progress = LoopProgress(100, "look-alike check", "pairs", interval=20, quiet=20, clock=clock,
                            out=lambda text, flush: lines.append(text))
    for _ in range(10):
        clock.now += 1
        progress.update()
    assert lines == []  # 10 s: nothing
    for _ in range(20):
        clock.now += 1
        progress.update(note="epoch 2/5")
    assert lines == ["look-alike check, epoch 2/5: 20/100 pairs, 1.0 pairs/s, about 1 min 20 s left"]
    clock.now += 5
    progress.update()
    assert len(lines) == 1  # at most one line per interval
    progress.close()
    assert lines[-1].endswith("31/100 pairs, 0.9 pairs/s, about 1 min 18 s left")


def test_no_closing_line_repeats_the_last_one():
    clock, lines = Clock(), []
    progress = LoopProgress(1, "predicting", "batches", clock=clock, out=lambda text, flush: lines.append(text))
    clock.now = 30
    progress.update()
    progress.close()
    assert lines == ["predicting: 1/1 batches, 0.0 batches/s, 30 s"]


def test_a_silent_loop_prints_no_closing_line():
    lines = []
    progress = LoopProgress(3, "x", out=lambda text, flush: lines.append(text))
    progress.update(3)
    progress.close()
    assert lines == []
