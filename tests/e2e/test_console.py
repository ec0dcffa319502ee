"""The web console in a real browser (Debian chromium + chromedriver through Selenium), against a store made
by the README's paths: the quickstart (trained, served, probed with drift), a retrain (a challenger and a
second run), and the A/B example served with real traffic (variants, a shadow, canary steps)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.conftest import ROOT, cli_env, free_port, stop_process, wait_http
from tests.e2e.conftest import run

TOKEN = "console-test-token"
FLUSH_S = 1  # serving.request_log.flush_s, set below


@pytest.fixture(scope="module")
def store(cli_quickstart, demo, tmp_path_factory):
    r, store, env = cli_quickstart
    assert r.returncode == 0, r.stderr[-3000:]
    # The closed loop's job: a second run, registered as @challenger.
    got = run(["raymlops", "retrain", "configs/quickstart.yaml", "--set", "training.tune.num_samples=1"], 600, **env)
    assert got.returncode == 0 and "challenger: models:/churn/2" in got.stdout, got.stdout + got.stderr[-3000:]
    # The A/B example: champion 90 / challenger 10, a shadow, a canary stepping every 2 s, real traffic.
    port = free_port()
    log = open(tmp_path_factory.mktemp("ab") / "serve.log", "w+")
    proc = subprocess.Popen(
        [
            "raymlops",
            "serve",
            "configs/ab_canary.yaml",
            "--set",
            f"serving.port={port}",
            "--set",
            "serving.canary.interval_s=2",
            "--set",
            "serving.canary.rollback_on.min_requests=5",
            "--set",
            "serving.canary.rollback_on.p99_ms=5000",  # a busy 2-core CI box is slow
            "--set",
            "serving.autoscaling.max_replicas=1",
            "--set",
            f"serving.request_log.flush_s={FLUSH_S}",
        ],
        cwd=ROOT,
        env=cli_env(**env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/churn-ab"
    try:
        wait_http(f"{url}/variants", proc, log, 300)
        rows = pd.read_parquet(demo / "holdout.parquet").drop(columns=["churned"]).head(200)
        rows = json.loads(rows.to_json(orient="records", date_format="iso"))
        answered = []

        def client(k):  # single-row requests, each with its own customer (the sticky key spreads them)
            with httpx.Client(timeout=60) as c:
                n = 0
                while not stop.is_set():
                    body = {"instances": [rows[(k * 7919 + n) % len(rows)]]}
                    assert c.post(f"{url}/predict", json=body).status_code == 200
                    n += 1
                answered.append(n)

        stop = threading.Event()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        end = time.time() + 90
        # until the canary has taken a step (a rollback fails the check below)
        while time.time() < end and all(t.is_alive() for t in threads):
            canary = httpx.get(f"{url}/variants", timeout=30).json().get("canary") or {}
            if canary.get("step", 0) >= 1 or canary.get("status") != "running":
                break
            time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(60)
        i = sum(answered)
        steps = httpx.get(f"{url}/variants", timeout=30).json()
        time.sleep(FLUSH_S + 2)  # the replicas' request logs flush: the traffic is in storage for the console
        assert len(answered) == 3 and i >= 50, f"{len(answered)} clients ended, {i} requests answered"
        assert (steps.get("canary") or {}).get("step", 0) >= 1, steps  # the canary moved on under real traffic
        # the app keeps running while the console is tested (its canary is paused and rolled back live)
        yield store, env, steps
    finally:
        proc.send_signal(signal.SIGTERM)  # the CLI alone: it deletes the apps, which flush their request logs
        try:
            proc.wait(timeout=120)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the local Ray it started, if anything is left
            except ProcessLookupError:
                pass
            log.close()


@pytest.fixture(scope="module")
def console(store):
    path, env, _ = store
    port = free_port()
    log = open(path.parent / "console.log", "w+")
    proc = subprocess.Popen(
        [
            "raymlops",
            "console",
            "--config",
            "configs/quickstart.yaml",
            "--config",
            "configs/ab_canary.yaml",
            "--port",
            str(port),
            "--mlflow-ui",
            "http://127.0.0.1:5000",
        ],
        cwd=ROOT,
        env=cli_env(**env, RAYMLOPS_CONSOLE_TOKEN=TOKEN),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/api/overview", proc, log, 60)
    yield base
    stop_process(proc)
    log.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(a)
    opts.binary_location = "/usr/bin/chromium"
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("RAYMLOPS_CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("console-screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"console screenshots: {out}")
    return out


def visit(driver, url: str, shots: Path, name: str, expect_errors: bool = False):
    """Loads a page, waits for its charts, saves a screenshot, and fails on any JavaScript console error."""
    from selenium.webdriver.common.by import By

    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    end = time.time() + 20
    while time.time() < end and driver.execute_script(
        "return [...document.querySelectorAll('.chart')].some(c => !c.querySelector('.main-svg'))"
    ):
        time.sleep(0.2)
    driver.save_screenshot(str(shots / f"{name}.png"))
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    if not expect_errors:
        assert driver.find_elements(By.CSS_SELECTOR, ".panel") == [], driver.find_element(
            By.CSS_SELECTOR, ".panel"
        ).text
    return driver


def points(driver) -> list[int]:
    """Data points drawn per chart (plotly's SVG markers and bars)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('.chart')].map(c => c.querySelectorAll("
        "'.scatterlayer .point, .barlayer .point').length)"
    )


def test_every_page_renders_its_data_and_charts(console, browser, shots, store):
    from selenium.webdriver.common.by import By

    d = visit(browser, console + "/", shots, "overview")
    apps = d.find_element(By.CSS_SELECTOR, "table.apps").text
    assert "churn-quickstart" in apps and "churn-ab" in apps
    assert (
        "churn" in d.find_element(By.TAG_NAME, "main").text
        and "drift" in d.find_element(By.CSS_SELECTOR, "table.events").text
    )

    d = visit(browser, console + "/runs", shots, "runs")
    assert d.find_element(By.ID, "total").text == "2"
    # navigation: from the list to a run, whose trial curves and report are drawn
    d.find_elements(By.CSS_SELECTOR, "tr.run a")[0].click()
    assert "/runs/churn-quickstart/" in d.current_url
    visit(browser, d.current_url, shots, "run")
    assert len(points(d)) == 2 and all(n > 10 for n in points(d)), points(d)  # curve rounds; importance bars
    link = d.find_element(By.LINK_TEXT, "MLflow run").get_attribute("href")
    assert re.fullmatch(r"http://127\.0\.0\.1:5000/#/experiments/\d+/runs/[0-9a-f]{32}", link), link
    imgs = d.find_elements(By.CSS_SELECTOR, "img")
    assert imgs and all(d.execute_script("return arguments[0].naturalWidth", i) > 0 for i in imgs)

    # compare: tick both runs, press compare
    visit(browser, console + "/runs", shots, "runs")
    for box in d.find_elements(By.CSS_SELECTOR, "input.pick"):
        box.click()
    d.find_element(By.ID, "compare").click()
    visit(browser, d.current_url, shots, "compare")
    assert "/compare?" in d.current_url
    header = d.find_elements(By.CSS_SELECTOR, "table.diffs")[0].find_elements(By.TAG_NAME, "th")
    assert len(header) == 3  # the key column and one per run
    assert len(points(d)) == 1 and points(d)[0] > 10

    d = visit(browser, console + "/deployments/churn-ab", shots, "deployment")
    table = d.find_element(By.CSS_SELECTOR, "table.variants").text
    assert "champion" in table and "challenger" in table and "candidate" in table
    assert "no canary" not in d.find_element(By.CSS_SELECTOR, "table.canary").text
    assert "%" in d.find_element(By.CSS_SELECTOR, "table.shadows").text  # the shadow's agreement
    assert points(d) and all(n > 0 for n in points(d))

    d = visit(browser, console + "/monitoring/churn-quickstart", shots, "monitoring")
    assert len(points(d)) == 2 and all(n > 0 for n in points(d))  # p-values and statistics per window
    assert "none" not in d.find_element(By.CSS_SELECTOR, "table.verdicts").text  # the shifted probe drifted
    assert "monthly_charges" in d.find_element(By.CSS_SELECTOR, "table.quality").text

    d = visit(browser, console + "/datasets", shots, "datasets")
    assert len(d.find_elements(By.CSS_SELECTOR, "table.datasets a[href^='/runs/']")) == 2  # both runs, same data
    assert " → " in d.find_element(By.CSS_SELECTOR, "td.range").text  # the training rows' event-time range
    # training.explore (on in the quickstart): the newest run's profile of its training split
    d.find_element(By.LINK_TEXT, "data").click()
    visit(browser, d.current_url, shots, "data")
    assert "/data/churn-quickstart/" in d.current_url
    assert d.find_elements(By.CSS_SELECTOR, "section[id='col-contract'] svg")  # its charts are drawn
    assert "With the label" in d.find_element(By.TAG_NAME, "main").text
    visit(browser, console + "/deployments", shots, "deployments")
    visit(browser, console + "/features", shots, "features")


def test_promote_and_rollback_through_the_ui(console, browser, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    def champion():
        return httpx.get(f"{console}/api/models/churn", timeout=30).json()["aliases"]["champion"]

    def submit(form_id, version=None, force=False, reason=""):
        form = browser.find_element(By.ID, form_id)
        if version is not None:
            Select(form.find_element(By.CSS_SELECTOR, "[data-field=version]")).select_by_visible_text(str(version))
            box = form.find_element(By.CSS_SELECTOR, "[data-field=force]")
            if box.is_selected() != force:
                box.click()
        form.find_element(By.CSS_SELECTOR, "[data-field=reason]").clear()
        form.find_element(By.CSS_SELECTOR, "[data-field=reason]").send_keys(reason)
        tok = form.find_element(By.NAME, "token")
        tok.clear()
        tok.send_keys(TOKEN)
        browser.execute_script("arguments[0].textContent = ''", form.find_element(By.CLASS_NAME, "result"))
        form.find_element(By.CSS_SELECTOR, "button").click()
        end = time.time() + 20
        while time.time() < end and not form.find_element(By.CLASS_NAME, "result").text:
            time.sleep(0.1)
        return form.find_element(By.CLASS_NAME, "result").text

    visit(browser, console + "/models/churn", shots, "model")
    assert champion() == 1
    # a forced promotion without a reason is refused, and nothing moves
    got = submit("promote", version=2, force=True, reason="")
    assert got.startswith("refused (422)") and "reason" in got, got
    browser.get_log("browser")  # the refused POST's 422 is logged by the browser: expected here
    assert champion() == 1
    # the gate passes (same data, same auc): the alias moves, and the move is in the history
    got = submit("promote", version=2, reason="")
    assert got.startswith("@champion -> version 2"), got
    time.sleep(1.5)  # the page reloads itself
    visit(browser, console + "/models/churn", shots, "model")
    assert champion() == 2
    first = browser.find_elements(By.CSS_SELECTOR, "table.history tr.move")[0].text
    assert "1 → 2" in first and "(console)" in first and "manual promotion" in first, first
    got = submit("rollback", reason="back to v1")
    assert got.startswith("@champion -> version 1"), got
    assert champion() == 1
    moves = httpx.get(f"{console}/api/models/churn", timeout=30).json()["history"]
    assert moves[0]["reason"] == "rollback from version 2: back to v1" and moves[0]["previous"] == 2


def test_pause_and_roll_back_the_live_canary_through_the_ui(console, browser, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    def canary():
        return httpx.get(f"{console}/api/deployments/churn-ab", timeout=30).json()["canary"]

    def act(action, reason):
        visit(browser, console + "/deployments/churn-ab", shots, "deployment-canary")
        form = browser.find_element(By.ID, "canary")
        Select(form.find_element(By.CSS_SELECTOR, "[data-field=action]")).select_by_value(action)
        form.find_element(By.CSS_SELECTOR, "[data-field=reason]").send_keys(reason)
        form.find_element(By.CSS_SELECTOR, "[data-field=by]").send_keys("ops")
        assert form.find_element(By.NAME, "token").get_attribute("value") == TOKEN  # remembered for the session
        form.find_element(By.CSS_SELECTOR, "button").click()
        end = time.time() + 20
        while time.time() < end and not form.find_element(By.CLASS_NAME, "result").text:
            time.sleep(0.1)
        assert "requested" in form.find_element(By.CLASS_NAME, "result").text

    def wait_for(status):
        end = time.time() + 20
        while time.time() < end and canary()["status"] != status:
            time.sleep(0.2)
        return canary()

    assert canary()["status"] == "running"
    act("pause", "checking the p99")
    c = wait_for("paused")  # applied by the live app's traffic controller, from the request in storage
    assert c["status"] == "paused" and c["reason"] == "pause by ops (console): checking the p99"
    act("rollback", "not today")
    c = wait_for("rolled_back")
    got = httpx.get(f"{console}/api/deployments/churn-ab", timeout=30).json()
    assert c["reason"] == "rollback by ops (console): not today" and got["weights"]["challenger"] == 0.0
    assert [e["event"] for e in got["canary_history"][-2:]] == ["pause", "rollback"]
    time.sleep(1.5)
    d = visit(browser, console + "/deployments/churn-ab", shots, "deployment-rolled-back")
    assert "rollback by ops (console): not today" in d.find_element(By.CSS_SELECTOR, "table.canary").text


def test_actions_need_the_token_and_refuse_other_origins(console):
    body = {"version": 2, "alias": "challenger"}
    r = httpx.post(f"{console}/api/models/churn/promote", json=body, timeout=30)
    assert r.status_code == 401 and "token" in r.json()["detail"]
    r = httpx.post(
        f"{console}/api/models/churn/promote",
        json=body,
        timeout=30,
        headers={"x-raymlops-token": TOKEN, "origin": "http://evil.example"},
    )
    assert r.status_code == 403 and "origin" in r.json()["detail"]
    r = httpx.post(
        f"{console}/api/models/churn/promote", json={"version": "two"}, timeout=30, headers={"x-raymlops-token": TOKEN}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "version"]
    doc = httpx.get(f"{console}/openapi.json", timeout=30).json()
    assert {
        "/api/runs",
        "/api/models/{name}",
        "/api/monitoring/{app_name}",
        "/api/deployments/{app_name}",
        "/api/compare",
        "/api/datasets",
        "/api/features",
        "/api/deployments/{app_name}/canary",
    } <= set(doc["paths"])
    r = httpx.post(
        f"{console}/api/deployments/churn-quickstart/canary",
        json={"action": "pause"},
        timeout=30,
        headers={"x-raymlops-token": TOKEN},
    )
    assert r.status_code == 404 and "no canary" in r.json()["detail"]
    r = httpx.post(
        f"{console}/api/deployments/churn-ab/canary",
        json={"action": "stop"},
        timeout=30,
        headers={"x-raymlops-token": TOKEN},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "action"]
    assert "/runs" not in doc["paths"]  # the HTML pages are not API
