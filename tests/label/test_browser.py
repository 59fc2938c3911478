"""End to end in headless Chromium (Selenium + Debian's chromium and chromium-driver): load the page,
label two examples by keyboard, one span by mouse, undo and skip by keyboard, then read the database."""

from __future__ import annotations

import time

import pytest

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")

from selenium.webdriver import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from lmforge.label.project import Project  # noqa: E402

from .label_server import live_server  # noqa: E402


def _wait(d, cond, what, timeout=15):
    try:
        return WebDriverWait(d, timeout, poll_frequency=0.05).until(lambda _: cond())
    except Exception:
        raise AssertionError(f"timed out waiting for {what}; status: "
                             f"{d.find_element(By.ID, 'status').text!r}") from None


def _keys(d, keys: str):
    ActionChains(d).send_keys(keys).perform()


def _shown(d):
    return d.find_element(By.ID, "meta").text


def test_label_two_by_keyboard(driver, tmp_path):
    p = Project.create(tmp_path / "c.db", "classification", ["pos", "neg", "neu"])
    p.add_examples([{"id": f"e{i}", "text": t} for i, t in enumerate(["好吃 😋", "too slow", "okay", "meh"])])
    p.set_predictions([{"id": "e0", "value": "neu", "score": 0.77}], model="tfidf")
    p.close()
    with live_server(tmp_path / "c.db", annotator="kb") as url:
        driver.get(url + "/")
        _wait(driver, lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", "the page")
        assert _shown(driver) == "#e0" and driver.find_element(By.ID, "text").text == "好吃 😋"
        pred = driver.find_element(By.ID, "pred").text
        assert "neu" in pred and "0.77" in pred  # the pre-label and its confidence
        assert driver.find_element(By.CSS_SELECTOR, "#labels button.on").text.endswith("neu")  # preselected
        _keys(driver, "1")
        _keys(driver, "\n")  # Enter
        _wait(driver, lambda: _shown(driver) == "#e1", "example e1")
        _keys(driver, "2")
        _keys(driver, " ")  # space
        _wait(driver, lambda: _shown(driver) == "#e2", "example e2")
        _keys(driver, "s")  # skip e2
        _wait(driver, lambda: _shown(driver) == "#e3", "example e3")
        _keys(driver, "u")  # undo the skip: e2 again
        _wait(driver, lambda: _shown(driver) == "#e2", "e2 after undo")
        assert driver.find_element(By.ID, "count").text.startswith("2 / 4")
        width = driver.find_element(By.CSS_SELECTOR, "#bar > div").value_of_css_property("width")
        assert float(width.rstrip("px")) > 0
    with Project(tmp_path / "c.db") as p:
        assert p.current() == {"e0": {"kb": "pos"}, "e1": {"kb": "neg"}}
        assert [h["status"] for h in p.history("e2")] == ["skipped"] and p.history("e2")[0]["undone_at"]


def test_span_by_mouse(driver, tmp_path):
    text = "😀🎉 我爱北京，Bob 住在 Paris。"
    p = Project.create(tmp_path / "n.db", "ner", ["PER", "LOC"])
    p.add_examples([{"id": "s1", "text": text}, {"id": "s2", "text": "next one"}])
    p.close()
    with live_server(tmp_path / "n.db", annotator="mouse") as url:
        driver.get(url + "/")
        _wait(driver, lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", "the page")
        _keys(driver, "2")  # LOC for new spans
        box = driver.find_element(By.ID, "text")
        # where 北京 is on screen (UTF-16 offsets 7..9 in the text node, Python 5..7: two emoji before it)
        rect = driver.execute_script("""
            const node = arguments[0].firstChild, r = document.createRange();
            r.setStart(node, 7); r.setEnd(node, 9);
            const b = r.getBoundingClientRect(), c = arguments[0].getBoundingClientRect();
            return {x0: b.left - c.left, x1: b.right - c.left, y: (b.top + b.bottom) / 2 - c.top,
                    w: c.width, h: c.height};""", box)
        cx, cy = rect["w"] / 2, rect["h"] / 2
        (ActionChains(driver)
         .move_to_element_with_offset(box, int(rect["x0"] + 2 - cx), int(rect["y"] - cy))
         .click_and_hold()
         .move_to_element_with_offset(box, int(rect["x1"] - 2 - cx), int(rect["y"] - cy))
         .release()
         .perform())
        _wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, "#text mark"), "the span mark")
        mark = driver.find_element(By.CSS_SELECTOR, "#text mark")
        assert mark.get_attribute("data-label") == "LOC" and mark.text == "北京"
        _keys(driver, "\n")
        _wait(driver, lambda: _shown(driver) == "#s2", "the next example")
        time.sleep(0.1)
    with Project(tmp_path / "n.db") as p:
        spans = p.value_of("s1", "mouse")
        assert spans == [{"start": 5, "end": 7, "label": "LOC", "text": "北京"}]
        assert text[5:7] == "北京"
