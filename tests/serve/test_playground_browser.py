"""The playground at ``/`` of a live ``lmforge serve`` in headless Chromium (Selenium with Debian's chromium
and chromium-driver; skipped when they are absent): the served models fill the page's sections, a
request the server refuses shows its error and is left out of the conversation, a chat message streams
its reply into the chat log (the bubble's text grows chunk by chunk, then the reply is marked done and
equals what the API answers for the same conversation), and the classify form turns two lines into two
rendered results equal to ``/v1/classify``'s."""

from __future__ import annotations

import httpx
import pytest

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from .live import live_server, save_classifier  # noqa: E402

LABELS = ("neg", "pos")

# every text the chat bubble takes, in order (a MutationObserver sees each assignment, even when several
# chunks arrive in one network read)
RECORD_GROWTH = """
window.__sizes = [];
new MutationObserver((records) => {
  for (const r of records) {
    if (!r.target.classList || !r.target.classList.contains("assistant")) continue;
    for (const n of r.addedNodes) if (n.nodeType === Node.TEXT_NODE) window.__sizes.push(n.data.length);
  }
}).observe(document.getElementById("chat-log"), {childList: true, subtree: true});
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, serve_tok, decoder_dir, chat_dir):
    root = tmp_path_factory.mktemp("playground")
    clf = save_classifier(root, serve_tok, LABELS)
    with live_server([f"tiny={decoder_dir}", f"chat={chat_dir}", f"clf={clf}"], root) as s:
        yield s


def _wait(d, cond, what, timeout=20):
    try:
        return WebDriverWait(d, timeout, poll_frequency=0.05).until(lambda _: cond())
    except Exception:
        raise AssertionError(f"timed out waiting for {what}; status: "
                             f"{d.find_element(By.ID, 'status').text!r}") from None


def _text(d, element_id: str) -> str:
    return d.find_element(By.ID, element_id).text


def test_models_chat_streaming_and_classify_in_the_browser(driver, server):
    driver.get(server.url + "/")
    _wait(driver, lambda: "model(s)" in _text(driver, "status"), "the model list")
    status = _text(driver, "status")
    assert status.startswith("3 model(s)") and all(s in status for s in ("tiny (decoder)", "chat (chat)",
                                                                         "clf (classification)"))
    shown = {s: driver.find_element(By.ID, s).is_displayed() for s in ("chat", "complete", "classify", "ner", "embed")}
    assert shown == {"chat": True, "complete": True, "classify": True, "ner": False, "embed": False}
    assert [o.text for o in Select(driver.find_element(By.ID, "chat-model")).options] == ["chat"]
    assert [o.text for o in Select(driver.find_element(By.ID, "classify-model")).options] == ["clf"]

    # max tokens defaults to what leaves room for a prompt in the 64-token context; more is the server's 400,
    # shown in the status and the bubble, and that failed turn is not sent again
    max_box, box = driver.find_element(By.ID, "chat-max"), driver.find_element(By.ID, "chat-input")
    assert max_box.get_attribute("value") == "32"
    max_box.clear()
    max_box.send_keys("1000")
    box.send_keys("Hi")
    driver.find_element(By.ID, "chat-send").click()
    _wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, "#chat-log .assistant.done"), "the failed reply")
    assert "maximum context length is 64" in _text(driver, "status")
    assert driver.find_elements(By.CSS_SELECTOR, "#chat-log .assistant.error")
    max_box.clear()
    max_box.send_keys("32")

    # chat: greedy (temperature 0), so the streamed reply must equal the API's for the same conversation
    temp = driver.find_element(By.ID, "chat-temp")
    temp.clear()
    temp.send_keys("0")
    driver.execute_script(RECORD_GROWTH)
    box.send_keys("Hello!")
    driver.find_element(By.ID, "chat-send").click()
    _wait(driver, lambda: len(driver.find_elements(By.CSS_SELECTOR, "#chat-log .assistant.done")) == 2, "the reply")
    assert _text(driver, "status") == "done", _text(driver, "status")
    user, reply = driver.find_elements(By.CSS_SELECTOR, "#chat-log .msg")[2:]
    assert "user" in user.get_attribute("class") and user.text == "Hello!"
    text = reply.get_attribute("textContent")
    sizes = driver.execute_script("return window.__sizes")
    assert len(sizes) >= 3 and sizes == sorted(sizes) and sizes[-1] == len(text), sizes  # it grew, then stopped
    assert box.get_attribute("value") == "" and driver.find_element(By.ID, "chat-send").is_enabled()
    assert not driver.find_element(By.ID, "chat-stop").is_enabled()
    max_tokens = int(driver.find_element(By.ID, "chat-max").get_attribute("value"))
    want = httpx.post(f"{server.url}/v1/chat/completions", timeout=30, json={  # (without the failed "Hi")
        "model": "chat", "messages": [{"role": "user", "content": "Hello!"}], "temperature": 0,
        "max_tokens": max_tokens, "stream": False}).json()
    assert text == want["choices"][0]["message"]["content"] and text

    # classify: two lines, two results, each with its label and its text
    lines = ["good great fine", "你好，今天天气很好。"]
    driver.find_element(By.ID, "classify-input").send_keys("\n".join(lines))
    driver.find_element(By.CSS_SELECTOR, "#classify-form button[type=submit]").click()
    _wait(driver, lambda: len(_text(driver, "classify-out").splitlines()) == 2, "two classify results")
    api = httpx.post(f"{server.url}/v1/classify", json={"model": "clf", "input": lines}, timeout=30).json()
    rendered = driver.find_element(By.ID, "classify-out").get_attribute("textContent").split("\n")  # (tabs kept)
    for line, text, result in zip(rendered, lines, api["results"]):
        assert line == f"{result['label']} ({result['score']})\t{text}" and result["label"] in LABELS
    assert _text(driver, "status") == "done"
