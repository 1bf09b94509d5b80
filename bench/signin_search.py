"""Sign-in to first search on the page, and what the rights check and the audit row add to a search.

    .venv/bin/python bench/signin_search.py [--rounds 5]

The page runs in-process (Streamlit's AppTest) with RAG_AUTH=ldap against a real OpenLDAP slapd on
127.0.0.1 (Debian's ``slapd``), a policy file of 500 group lines, and the small offline model of
GLuCoSE's architecture (the real model cannot be downloaded here: the figures are the page's, the
directory's and the service's own costs, not GLuCoSE's embedding of the question). Each round: a new
session signs in as 田中 and asks one question; the time from pressing サインイン to the cards shown is
split into the sign-in (bind, group search, the page drawn for the person) and the first search.
Then the service's search is timed with a caller that has every right and with the signed-in
person's caller, and the rights check alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st
from streamlit.testing.v1 import AppTest

from pipelines.service.library import Library
from pipelines.service.policy import load_policy
from pipelines.service.results import Caller, Question
from pipelines.service.service import Service
from pipelines.settings import Settings
from testkit.ldap import GROUP_BASE, PEOPLE, USER_DN, Slapd
from testkit.offline_model import build_offline_model
from testkit.page import APP

LEAVE = "社内規程によると、有給休暇は入社六か月後から取得できます。年次有給休暇は十日です。"
QUESTION = "有給休暇はいつから取れますか"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="signin-bench-"))
    model = build_offline_model(work / "tiny-glucose")
    policy = work / "policy.txt"
    lines = [f"group:部署{i} 部署{i}* read,download" for i in range(500)] + ["group:jinji 人事* read,download"]
    policy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    slapd = Slapd().start()
    try:
        os.environ.update(
            RAG_DATA_DIR=str(work / "data"),
            RAG_EMBEDDING_MODEL=str(model),
            RAG_DEVICE="cpu",
            RAG_AUTH="ldap",
            RAG_LDAP_URL=slapd.url,
            RAG_LDAP_USER_DN=USER_DN,
            RAG_LDAP_GROUP_BASE=GROUP_BASE,
            RAG_POLICY_FILE=str(policy),
        )
        settings = Settings.from_env()
        service = Service(Library(settings))
        admin = Caller("cli")
        service.create_collection(admin, "人事規程")
        service.upload(admin, "人事規程", [("就業規則.txt", LEAVE.encode("utf-8"))])
        page_rounds(args.rounds)
        service_rounds(service, settings)
        service.close()
    finally:
        slapd.stop()


def page_rounds(rounds: int) -> None:
    tanaka = PEOPLE[0]
    signed, searched = [], []
    for _ in range(rounds + 1):  # the first round warms the server process (model, store): not counted
        at = AppTest.from_file(APP, default_timeout=120).run()
        at.text_input(key="sign-in-user").input(tanaka.uid)
        at.text_input(key="sign-in-password").input(tanaka.password)
        started = time.perf_counter()
        next(b for b in at.button if b.label == "サインイン").click()
        at.run()
        while not any(c.value.startswith("埋め込みモデル: ") for c in at.caption):  # the model, once per process
            time.sleep(0.1)
            at.run()
        middle = time.perf_counter()
        at.text_input(key="question").input(QUESTION).run()
        done = time.perf_counter()
        assert not at.exception, at.exception
        assert any("位** 類似度" in m.value for m in at.markdown), "no card was shown"
        signed.append(middle - started)
        searched.append(done - middle)
    st.cache_resource.clear()
    print(f"page, {rounds} sessions (median, first round left out as warm-up):")
    print(f"  sign-in to the page drawn for the person: {statistics.median(signed[1:]) * 1000:.0f} ms")
    print(f"  first search to its cards:                {statistics.median(searched[1:]) * 1000:.0f} ms")
    print(
        f"  sign-in to first search, together:        {statistics.median(a + b for a, b in zip(signed[1:], searched[1:], strict=True)) * 1000:.0f} ms"
    )


def service_rounds(service: Service, settings: Settings) -> None:
    policy = load_policy(settings.policy_file)
    tanaka = Caller("page", "tanaka", "", policy, user="tanaka", groups=("jinji", "部署3"))
    everything = Caller("page")
    question = Question(QUESTION, best_sentences=False)
    for caller in (everything, tanaka) * 3:  # warm-up
        service.search(caller, "人事規程", question)
    timings: dict[str, list[float]] = {"every right": [], "signed in": []}
    for _ in range(30):
        for label, caller in (("every right", everything), ("signed in", tanaka)):
            started = time.perf_counter()
            service.search(caller, "人事規程", question)
            timings[label].append(time.perf_counter() - started)
    n = 20000
    started = time.perf_counter()
    for _ in range(n):
        tanaka.may("人事規程", "read")
    check = (time.perf_counter() - started) / n
    print("service.search, 30 each, interleaved (median; each writes its query-log and audit rows):")
    for label, values in timings.items():
        print(f"  {label}: {statistics.median(values) * 1000:.2f} ms")
    print(f"the rights check alone (501 policy lines, 3 of them the person's): {check * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
