"""The views of a sweep in a real browser (Debian's Chromium, driven by Selenium), and optuna-dashboard's
API while a sweep runs. Screenshots are named at the end of the test output."""

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from sweep.record.files import OPTUNA_JOURNAL
from sweep.record.state import Status, read
from tests.helpers import ROOT, SCREENSHOTS, SWEEP, TOKEN, free_port, read_csv, sweep_cli

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Chromium missing: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)  # Selenium's driver manager would try the network
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screenshots")

    def save(element, name: str) -> Path:
        path = folder / f"{name}.png"
        assert element.screenshot(str(path)), f"no screenshot of {name}"
        SCREENSHOTS.append(path)
        return path

    return save


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def severe_console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.fixture(scope="module")
def finished_sweep(asha_sweep):
    """A real small sweep (6 trials, ASHA), with the report its `run` writes at the end (conftest's)."""
    return asha_sweep[1]


@pytest.fixture(scope="module")
def live_sweep(tmp_path_factory):
    """A sweep of minutes, running while the tests look at it; interrupted (Ctrl-C) at the end."""
    tmp = tmp_path_factory.mktemp("live")
    command = [SWEEP, "run", str(ROOT / "tests/spaces/live.yaml"), "--storage-path", str(tmp),
               "--name", "live"]  # fmt: skip
    env = {**os.environ, "SWEEP_STATUS_EVERY_S": "2"}  # status lines without a terminal, every 2 s
    process = subprocess.Popen(command, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    start_line = process.stdout.readline()  # the start line: trials, ..., the dashboard and how to log in
    assert "; Ray dashboard http://" in start_line, start_line + process.stderr.read()
    dashboard = "http://" + start_line.split("; Ray dashboard http://")[1].split()[0]
    yield process, tmp / "live", dashboard
    if process.poll() is None:  # the last test did not get to interrupt it
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=180)


def test_report_renders_every_plot(browser, screenshots, finished_sweep):
    from selenium.webdriver.common.by import By

    trials = read_csv(finished_sweep / "results.csv")
    assert len(list(finished_sweep.glob("*.png"))) >= 3
    browser.get((finished_sweep / "report.html").as_uri())
    plots = browser.execute_script(
        "return Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".map(e => [e.id, e.data.length, e.querySelectorAll('.main-svg').length])"
    )
    drawn = {name: (traces, svgs) for name, traces, svgs in plots}
    assert set(drawn) == {"history", "parallel-coordinates", "importance", "learning-curves"}
    assert all(traces >= 1 and svgs >= 1 for traces, svgs in drawn.values()), drawn
    assert drawn["learning-curves"][0] == len(trials)  # one line per trial, ASHA's stopped ones too
    assert not severe_console_errors(browser)
    curves = browser.execute_script(
        "return document.getElementById('learning-curves').data.map(t => t.x.length)"
    )  # fmt: skip
    assert sorted(curves) == sorted(int(t["epochs"]) for t in trials)  # the early stops end early
    rows = browser.find_elements(By.CSS_SELECTOR, "#trials tbody tr")
    assert len(rows) == len(trials)
    for name in drawn:
        screenshots(browser.find_element(By.ID, name), f"report-{name}")
    screenshots(browser.find_element(By.ID, "trials"), "report-trials-table")


def start_dashboard(experiment_dir: Path):
    port = free_port()
    command = [SWEEP, "dashboard", str(experiment_dir), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = process.stdout.readline()
    assert first.startswith(f"optuna-dashboard: http://127.0.0.1:{port}"), first
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: port in listening_ports(process.pid), 60, "optuna-dashboard to listen")
    return process, url


def listening_ports(pid: int, host: str = "127.0.0.1") -> set[int]:
    connections = psutil.Process(pid).net_connections(kind="inet")
    listening = [c for c in connections if c.status == psutil.CONN_LISTEN]
    assert all(c.laddr.ip == host for c in listening), listening  # never 0.0.0.0: it has no login
    return {c.laddr.port for c in listening}


def test_optuna_dashboard_lists_the_study_and_its_trials(browser, screenshots, finished_sweep):
    from selenium.webdriver.common.by import By

    process, url = start_dashboard(finished_sweep)
    try:
        browser.get(f"{url}/dashboard")
        body = wait_for(lambda: "asha_test" in browser.page_source and browser.find_element(By.TAG_NAME, "body"), 60,
                        "the study in the dashboard's list")  # fmt: skip
        screenshots(body, "optuna-dashboard-studies")
        browser.get(f"{url}/dashboard/studies/0/trials")
        wait_for(lambda: "Trial 5" in browser.find_element(By.TAG_NAME, "body").text, 60, "the trials page")
        screenshots(browser.find_element(By.TAG_NAME, "body"), "optuna-dashboard-trials")
        assert not severe_console_errors(browser)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_optuna_dashboard_shows_trials_while_the_sweep_runs(live_sweep):
    sweep, experiment_dir, _ = live_sweep
    wait_for(lambda: (experiment_dir / OPTUNA_JOURNAL).exists(), 120, "the study's journal")
    process, url = start_dashboard(experiment_dir)
    try:
        studies = get_json(f"{url}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["live_test"]
        first = len(get_json(f"{url}/api/studies/0")["trials"])
        later = wait_for(lambda: len(get_json(f"{url}/api/studies/0")["trials"]) > first and sweep.poll() is None,
                         120, "more trials in the dashboard")  # fmt: skip
        assert later and sweep.poll() is None  # the sweep still runs
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_report_mid_sweep(live_sweep):
    sweep, experiment_dir, _ = live_sweep
    wait_for(lambda: read(experiment_dir).ended(), 120, "a first trial to end")
    run = sweep_cli("report", str(experiment_dir), cwd=experiment_dir)
    assert run.returncode == 0, run.stderr
    assert sweep.poll() is None
    page = (experiment_dir / "report.html").read_text()
    assert "of 200 trials" in page and 'id="learning-curves"' in page


def trial_worker_pids() -> set[int]:
    """Processes of the trials' Ray actors, named after Tune's function trainable."""
    return {
        p.pid for p in psutil.process_iter(["cmdline"]) if " ".join(p.info["cmdline"] or []).startswith("ray::Impl")
    }


def test_ray_dashboard_shows_the_trial_workers(browser, screenshots, live_sweep):
    from selenium.webdriver.common.by import By

    _, _, dashboard = live_sweep
    wait_for(trial_worker_pids, 120, "the first trials to start")
    token = TOKEN["RAY_AUTH_TOKEN"]
    browser.get(dashboard)
    box = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "input[type=password]"), 60, "the token dialog")
    box[0].send_keys(token)
    browser.find_element(By.XPATH, "//button[translate(normalize-space(), 'submit', 'SUBMIT')='SUBMIT']").click()
    browser.get(f"{dashboard}/#/actors")
    body = wait_for(lambda: "run_trial" in browser.find_element(By.TAG_NAME, "body").text and browser.find_element(
        By.TAG_NAME, "body"), 60, "the trial actors")  # fmt: skip
    text = body.text
    assert "ImplicitFunc" in text and "ALIVE" in text
    workers = trial_worker_pids()
    assert workers and any(str(pid) in text for pid in workers), (workers, text[:2000])
    screenshots(body, "ray-dashboard-actors")


def test_an_interrupted_sweep_printed_status_lines_and_keeps_what_ran(live_sweep):
    """Without a terminal, a plain status line at most every SWEEP_STATUS_EVERY_S (here 2 s); Ctrl-C keeps
    what ran, the report included, and says how to continue."""
    sweep, experiment_dir, _ = live_sweep
    wait_for(lambda: read(experiment_dir).ended(), 120, "a first trial to end")
    started = psutil.Process(sweep.pid).create_time()
    wait_for(lambda: time.time() - started > 8, 60, "the sweep to run 8 s")
    sweep.send_signal(signal.SIGINT)
    stdout, stderr = sweep.communicate(timeout=180)
    assert sweep.returncode == 130, stdout[-2000:] + stderr[-2000:]
    elapsed = time.time() - started
    status = [line for line in stdout.splitlines() if re.match(r"\[\d+/200 trials\] \d+ running, ", line)]
    assert 2 <= len(status) <= elapsed / 2 + 1, status
    assert "left" in status[-1] and "best val_acc" in status[-1]
    assert f"report:      {experiment_dir / 'report.html'}" in stdout
    assert f"continue the sweep with `sweep resume {experiment_dir}`" in stderr
    state = read(experiment_dir)
    assert state.count(Status.INTERRUPTED) >= 1 and state.ended() and not state.live
    assert "interrupted" in {row["status"] for row in read_csv(experiment_dir / "results.csv")}
