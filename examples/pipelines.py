"""PiCloud's queue examples as aqueue pipelines: double, split with iter_output, a stateful
PriceExtractor, and a scraper with retry_on and on_error.

    python examples/pipelines.py

With no Redis configured it starts the embedded one (in ./.aqueue). One worker daemon per
stage's queue (`python -m aqueue worker pipelines:<stage> --queue <queue>`), each a separate
process, as under systemd: a stage is a queue served by a registry of its own, and each
return value goes to the stage's output queues exactly once. The script posts the inputs,
follows each one's outputs (`Job.outputs`) and prints them, then stops the daemons.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process

from aqueue import Client, Context, Listeners

# -- the stages: one registry each ----------------------------------------------------------

double = Listeners()  # numbers -> doubled


@double.listener(outputs=["doubled"])
async def times_two(x: int, ctx: Context) -> int | None:
    return None if x < 0 else 2 * x  # None: nothing goes on to "doubled"


split = Listeners()  # sentences -> words, one message per word


@split.listener(outputs=["words"], iter_output=True)
async def words_of(sentence: str, ctx: Context) -> list[str]:
    return sentence.split()


class PriceExtractor:
    """A stateful handler: its "database" is opened once, before the first item."""

    def setup(self) -> None:
        self.prices = {"apple": 0.5, "pear": 0.75, "fig": 1.25}

    def teardown(self) -> None:
        self.prices.clear()

    async def __call__(self, item: str, ctx: Context) -> dict[str, Any]:
        return {"item": item, "price": self.prices[item]}


prices = Listeners()  # items -> prices
prices.add(PriceExtractor(), name="price_of", outputs=["prices"])


class Unreachable(ConnectionError):
    pass


scrape = Listeners()  # urls -> emails; what cannot be scraped -> bad-urls or errors


@scrape.listener(
    outputs=["emails"],
    retry_on=[ConnectionError],
    max_retries=2,
    retry_delay=0,
    on_error={ValueError: "bad-urls", Exception: "errors"},
)
async def scrape_emails(url: str, ctx: Context) -> list[str]:
    if not url.startswith("http"):
        raise ValueError(f"not a URL: {url!r}")
    if "down" in url:
        raise Unreachable(f"{url} did not answer (retry {ctx.retries})")
    return [f"info@{url.split('//')[1]}"]


STAGES = {"double": "numbers", "split": "sentences", "prices": "items", "scrape": "urls"}

# -- the run --------------------------------------------------------------------------------


async def main(home: str) -> None:
    env = {**os.environ, "AQUEUE_HOME": home}  # the same embedded Redis as ours
    daemons: list[Process] = []
    async with Client("numbers") as numbers:  # no URL: the embedded Redis (started here)
        try:
            for stage, queue in STAGES.items():
                daemons.append(
                    await anyio.open_process(
                        [sys.executable, "-m", "aqueue", "worker", f"pipelines:{stage}",
                         "--queue", queue, "--log-level", "WARNING"],
                        cwd=Path(__file__).parent, env=env, stdout=None, stderr=None,
                    )
                )  # fmt: skip
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for daemon in daemons:
                        tg.start_soon(_fail_if_exits, daemon)
                    await _run_examples(numbers)
                    tg.cancel_scope.cancel()
        finally:
            for daemon in daemons:
                if daemon.returncode is None:
                    daemon.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                statuses = [await daemon.wait() for daemon in daemons]
            print(f"stage daemons exited with statuses {statuses}")


async def _fail_if_exits(daemon: Process) -> None:
    status = await daemon.wait()
    raise SystemExit(f"a stage daemon exited early with status {status}")


async def _run_examples(numbers: Client) -> None:
    print("double:", [await _outputs(numbers, x, 1 if x >= 0 else 0) for x in (1, 2, 3, -1)])
    async with Client("sentences") as sentences:
        print("split:", await _outputs(sentences, "to be or not to be", 6))
    async with Client("items") as items:
        print("prices:", [await _outputs(items, item, 1) for item in ("apple", "fig")])
    async with Client("urls") as urls:
        for url in ("https://example.org", "htp:/typo", "https://down.example"):
            print(f"scrape {url}:", await _outputs(urls, url, 1))


async def _outputs(client: Client, msg: Any, expected: int) -> list[Any]:
    """Post `msg`, wait until its job ended and its `expected` outputs were forwarded, and
    read what they became downstream."""
    job_id = await client.post(msg)
    for _ in range(1200):  # (a minute) the forwarder posts them soon after the job ends
        job = await client.get_job(job_id)
        if job.is_finished and len(job.outputs) >= expected:
            break
        await anyio.sleep(0.05)
    found = []
    for queue, output in job.outputs:
        async with Client(queue) as downstream:
            body = (await downstream.get_job(output)).msg
        routed = queue in ("bad-urls", "errors")  # an error, routed by on_error
        found.append(
            f"{queue}: {body['exc_type']} after {body['attempt']} attempt(s)" if routed else body
        )
    return found


if __name__ == "__main__":
    anyio.run(main, os.path.abspath(os.environ.get("AQUEUE_HOME", ".aqueue")))
