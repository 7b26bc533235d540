"""Which fonts headless Chromium really draws a page's text with, over the DevTools protocol on a pipe
(`--remote-debugging-pipe`: NUL-separated JSON on file descriptors 3 and 4; no websocket client needed).

`CSS.getPlatformFontsForNode` names, per text node, each platform font used and how many glyphs it drew: the proof
that Chinese captions are drawn with a CJK font rather than as empty boxes, which the DOM alone cannot give.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time

# Elements whose own text (child text nodes: what getPlatformFontsForNode reports on) holds Han characters, marked
# with their count for DOM.querySelectorAll (the report has no fixed ids there).
MARK_HAN = """(() => {
  let n = 0;
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].filter(c => c.nodeType === 3).map(c => c.textContent).join('');
    const han = (own.match(/\\p{Script=Han}/gu) || []).length;
    if (han) { el.setAttribute('data-han', String(han)); n++; }
  }
  return n;
})()"""


class Browser:
    def __init__(self, chromium: str, profile: str, timeout: float = 60):
        commands_r, commands_w = os.pipe()
        replies_r, replies_w = os.pipe()

        def wire():  # in the child: Chromium reads fd 3 and writes fd 4 (moved up first: either may be 3 or 4 now)
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_r, replies_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe"]
        self.proc = subprocess.Popen(
            [*args, f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(3, 4),  # kept open after preexec_fn (subprocess closes other descriptors then)
            preexec_fn=wire,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_r)
        os.close(replies_w)
        self.commands = os.fdopen(commands_w, "wb", buffering=0)
        self.replies = os.fdopen(replies_r, "rb", buffering=0)
        self.buffer, self.next_id, self.deadline = b"", 0, time.monotonic() + timeout

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.commands.write(json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                if time.monotonic() > self.deadline:
                    raise TimeoutError(f"Chromium did not answer {method}")
                chunk = self.replies.read(1 << 16)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the pipe during {method}")
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def close(self) -> None:
        try:
            self.call("Browser.close")
        finally:
            self.proc.wait(timeout=30)


def han_fonts(chromium: str, url: str, profile: str) -> list[dict]:
    """For every element of the page whose own text holds Han characters: how many (`han`), its HTML, and the
    platform fonts Chromium drew its text with ({familyName, glyphCount, ...})."""
    browser = Browser(chromium, profile)
    try:
        target = browser.call("Target.createTarget", {"url": url})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "DOM", "CSS", "Runtime"):
            browser.call(f"{domain}.enable", session=session)

        def evaluate(expression: str):
            return browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)[
                "result"
            ].get("value")

        # the target starts on about:blank, already "complete": wait for the page itself
        while not evaluate("document.readyState === 'complete' && location.href !== 'about:blank'"):
            time.sleep(0.05)
        evaluate(MARK_HAN)
        root = browser.call("DOM.getDocument", {"depth": -1}, session)["root"]["nodeId"]
        nodes = browser.call("DOM.querySelectorAll", {"nodeId": root, "selector": "[data-han]"}, session)["nodeIds"]
        out = []
        for node in nodes:
            text = browser.call("DOM.getOuterHTML", {"nodeId": node}, session)["outerHTML"]
            attributes = browser.call("DOM.getAttributes", {"nodeId": node}, session)["attributes"]
            han = int(dict(zip(attributes[::2], attributes[1::2]))["data-han"])
            fonts = browser.call("CSS.getPlatformFontsForNode", {"nodeId": node}, session)["fonts"]
            out.append({"han": han, "html": text, "fonts": fonts})
        return out
    finally:
        browser.close()
