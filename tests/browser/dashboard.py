"""The dashboard in a real browser (Debian's chromium through chromedriver, driven by
selenium), against a running `wenming serve`. Run by tests/dashboard.rs, which starts the
server over a lake of two districts:

    python3 tests/browser/dashboard.py --url http://127.0.0.1:PORT --shots docs/img

Tokens (their names are the tokens): city-admin (admin, city), a-viewer (viewer,
district 330203), b-viewer (viewer, district 330212). District 330212 holds a station
named like an XSS attack. Each check raises with what it saw; exit status 0 means all
passed.
"""

import argparse
import json
import sys
import time
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

HOSTILE = '<img src=x onerror="window.__xss=1">'


def browser(width=1366, height=900):
    o = webdriver.ChromeOptions()
    for a in (
        "--headless --no-sandbox --disable-gpu --disable-background-networking "
        "--disable-component-update --disable-sync --no-first-run --disable-quic "
        "--disable-dev-shm-usage --lang=zh-CN"
    ).split():
        o.add_argument(a)
    o.add_argument(f"--window-size={width},{height}")
    o.binary_location = "/usr/bin/chromium"
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def wait(d, what, seconds=30):
    """Wait until `what(d)` is truthy; returns it."""
    try:
        return WebDriverWait(d, seconds, poll_frequency=0.1).until(lambda d: what(d))
    except TimeoutException:
        raise AssertionError(f"timed out waiting at {d.current_url}:\n{d.find_element(By.TAG_NAME, 'body').text[:2000]}")


def css(d, sel):
    return d.find_elements(By.CSS_SELECTOR, sel)


def login(d, url, token, path="/overview"):
    d.delete_all_cookies()
    d.get(url + path)
    field = wait(d, lambda d: css(d, "input[name=token]"))[0]
    assert "/login" in d.current_url, d.current_url
    field.send_keys(token)
    css(d, "button[type=submit]")[0].click()
    wait(d, lambda d: css(d, "#view") and not css(d, "input[name=token]"))
    assert token not in d.current_url, d.current_url


def api(url, token, path):
    req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def figures(d):
    """Every figure's question and value, as the page shows it."""
    return d.execute_script(
        """return [...document.querySelectorAll('[data-kpi]')].map(e => ({
            kpi: e.dataset.kpi, value: e.dataset.value, from: e.dataset.from, to: e.dataset.to,
            granularity: e.dataset.granularity, level: e.dataset.level, area: e.dataset.area,
            period: e.dataset.period, row_area: e.dataset.rowArea}))"""
    )


def same_as_the_api(url, token, figs, limit=40):
    """Each figure equals the API's answer to the question in its attributes."""
    asked = {}
    for f in figs[:limit]:
        q = {k: f[k] for k in ("from", "to", "granularity", "level", "area") if f[k]}
        if f["kpi"] == "volunteer_ranking":
            q["top"] = "20"
        path = f"/v1/kpis/{f['kpi']}?{urllib.parse.urlencode(q)}"
        a = asked.get(path) or api(url, token, path)
        asked[path] = a
        rows = [r for r in a["rows"] if r["period"] == f["period"] and r["area"] == f["row_area"]]
        assert rows, f"no row {f} in {path}"
        want = rows[0]["value"]
        got = None if f["value"] == "null" else float(f["value"])
        assert (want is None and got is None) or (want is not None and got == float(want)), f"{f} != {want} ({path})"
    return len(figs[:limit])


def console_errors(d):
    return [e for e in d.get_log("browser") if e["level"] == "SEVERE"]


def other_origin_requests(d, url):
    names = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [n for n in names if not n.startswith(url)]


def chart_options(d):
    return d.execute_script(
        "return [...document.querySelectorAll('.chart')].map(c => {"
        " const i = window.echarts.getInstanceByDom(c); return i ? JSON.stringify(i.getOption()) : ''; }).join('\\n')"
    )


def check(name, fn):
    started = time.time()
    fn()
    print(f"ok  {name} ({time.time() - started:.1f} s)", flush=True)


def measure(url, token, rounds):
    """The dashboard's speed as an office meets it: login to a complete overview, then
    changes of period, area and KPI, each first uncached and then cached (the same
    change again). Prints one JSON object of seconds (medians over `rounds`)."""
    d = browser()
    timings = {"login_to_overview": [], "period_cold": [], "period_cached": [],
               "trends_kpi_cold": [], "trends_kpi_cached": []}
    overview_done = lambda d: len(css(d, "[data-card]")) == 8 and css(d, ".grid2 .chart canvas") and len(css(d, ".grid2 .panel")) == 2
    try:
        go = "history.pushState(null, '', arguments[0]); dispatchEvent(new PopStateEvent('popstate'))"
        for r in range(rounds):
            d.delete_all_cookies()
            d.get(url + "/login")
            field = wait(d, lambda d: css(d, "input[name=token]"))[0]
            field.send_keys(token)
            started = time.time()
            css(d, "button[type=submit]")[0].click()
            wait(d, overview_done, 120)
            timings["login_to_overview"].append(time.time() - started)
            if r == 0:
                # What the first load transferred: the page, its assets and the answers.
                transferred = d.execute_script(
                    "return performance.getEntries().reduce((s, e) => s + (e.transferSize || 0), 0)")
            period = d.execute_script("return document.querySelector('input[name=period]').value")
            y, m = map(int, period.split("-"))
            back = (y * 12 + m - 1) - (r + 1)
            earlier = f"{back // 12}-{back % 12 + 1:02d}"
            # The same change twice: first its figures are computed, then cached.
            for key in ("period_cold", "period_cached"):
                started = time.time()
                d.execute_script(go, f"/overview?period={earlier}")
                wait(d, lambda d: earlier in css(d, "h1")[0].text and overview_done(d), 120)
                timings[key].append(time.time() - started)
                d.execute_script(go, f"/overview?period={period}")
                wait(d, lambda d: period in css(d, "h1")[0].text and overview_done(d), 120)
            granularity = ("week", "month", "quarter")[r % 3]
            for key in ("trends_kpi_cold", "trends_kpi_cached"):
                for kpi in ("participation_rate", "service_hours"):
                    started = time.time()
                    d.execute_script(go, f"/trends?kpi={kpi}&granularity={granularity}&level=street")
                    wait(d, lambda d: css(d, ".chart canvas") and css(d, "select[name=kpi]")
                         and css(d, "select[name=kpi]")[0].get_attribute("value") == kpi, 120)
                    if kpi == "participation_rate":
                        timings[key].append(time.time() - started)
        median = lambda v: sorted(v)[len(v) // 2]
        out = {k: round(median(v), 3) for k, v in timings.items() if v}
        out["login_to_overview_first"] = round(timings["login_to_overview"][0], 3)
        out["first_load_kb"] = round(transferred / 1024, 1)
        print(json.dumps(out))
    finally:
        d.quit()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--shots", help="directory for the screenshots")
    p.add_argument("--measure", metavar="TOKEN", help="measure speed as this token instead of testing")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    url = args.url.rstrip("/")
    if args.measure:
        return measure(url, args.measure, args.rounds)
    d = browser()
    try:
        def overview_equals_the_api():
            login(d, url, "city-admin")
            wait(d, lambda d: len(css(d, "[data-card]")) == 8 and css(d, ".grid2 .chart canvas"))
            figs = [f for f in figures(d) if f["kpi"]]
            cards = [f for f in figs if f["granularity"] == "month" and f["from"] == f["period"]]
            assert len(cards) >= 8, figs
            n = same_as_the_api(url, "city-admin", figs)
            assert n >= 8
            assert "city-admin" not in d.current_url
            assert d.execute_script("return document.cookie") == "", "the session cookie is HttpOnly"
            if args.shots:
                d.save_screenshot(f"{args.shots}/overview.png")

        def drill_down_and_back():
            period = d.execute_script("return document.querySelector('input[name=period]').value")
            d.get(f"{url}/rank?kpi=service_hours&period={period}")
            for level in ("district", "street"):
                link = wait(d, lambda d: css(d, "a[data-drill]"))[0]
                area = link.get_attribute("data-drill")
                link.click()
                wait(d, lambda d: f"area={area}" in d.current_url and css(d, "table.data tbody tr"))
                same_as_the_api(url, "city-admin", figures(d))
            station = wait(d, lambda d: css(d, "table.data a[href^='/stations/']"))[0]
            name = station.text
            station.click()
            wait(d, lambda d: d.current_url.split("?")[0].startswith(f"{url}/stations/") and css(d, ".chart canvas"))
            assert name in css(d, "h1")[0].text, (name, css(d, "h1")[0].text)
            d.back()
            crumb = wait(d, lambda d: css(d, ".crumbs a"))[0]
            crumb.click()
            wait(d, lambda d: "area=" not in d.current_url and css(d, "a[data-drill]"))

        def downloads_are_pinned_to_the_snapshot_shown():
            d.get(f"{url}/trends?kpi=service_hours")
            note = wait(d, lambda d: css(d, ".panel .lineage"))[0]
            snapshot = note.get_attribute("data-snapshot")
            assert snapshot.startswith("s1."), snapshot
            assert snapshot in note.text and "service_events" in note.get_attribute("title")
            links = [a.get_attribute("href") for a in css(d, ".panel .downloads a")]
            assert links and all(f"snapshot={snapshot}" in h for h in links), links
            # The snapshot named is the one the figures were computed from.
            fig = [f for f in figures(d) if f["kpi"] == "service_hours"][0]
            q = {k: fig[k] for k in ("from", "to", "granularity", "level", "area") if fig[k]}
            a = api(url, "city-admin", f"/v1/kpis/service_hours?{urllib.parse.urlencode(q)}")
            assert a["lineage"]["snapshot"] == snapshot, (a["lineage"], snapshot)

        def language_switch():
            d.get(f"{url}/overview")
            wait(d, lambda d: len(css(d, "[data-card]")) == 8)
            css(d, "#lang")[0].click()
            wait(d, lambda d: "Overview" in css(d, "h1")[0].text and len(css(d, "[data-card]")) == 8)
            titles = [e.text for e in css(d, "[data-card] .title")]
            assert "Activities held" in titles, titles
            css(d, "#lang")[0].click()
            wait(d, lambda d: "总览" in css(d, "h1")[0].text)

        def hostile_names_are_text():
            d.get(f"{url}/stations?area=330212")
            wait(d, lambda d: css(d, "#stations tbody tr"))
            cells = [a.text for a in css(d, "#stations a")]
            assert HOSTILE in cells, cells
            d.get(f"{url}/rank?kpi=service_hours&area=330212001")
            wait(d, lambda d: css(d, ".chart canvas"))
            assert HOSTILE in d.find_element(By.TAG_NAME, "body").text
            assert not d.execute_script("return window.__xss === 1"), "the name ran as markup"
            assert not css(d, "img[src='x']")

        def every_view_without_errors_or_other_origins():
            for path in ("/trends", "/rank", "/stations", "/volunteers", "/exports", "/quality", "/sql"):
                started = time.time()
                d.get(url + path)
                wait(d, lambda d: css(d, "#view h1"))
                time.sleep(0.3)
                print(f"    {path} {time.time() - started:.1f} s", flush=True)
            errors = console_errors(d)
            assert not errors, errors
            others = other_origin_requests(d, url)
            assert not others, others

        def sql_refuses_ddl():
            d.get(f"{url}/sql")
            box = wait(d, lambda d: css(d, "textarea[name=sql]"))[0]
            box.clear()
            box.send_keys("CREATE TABLE t (x INT)")
            css(d, "#run-sql")[0].click()
            error = wait(d, lambda d: css(d, "#result .error"))[0].text
            assert "not allowed" in error, error
            box.clear()
            box.send_keys("SELECT count(*) AS n FROM units")
            css(d, "#run-sql")[0].click()
            wait(d, lambda d: css(d, "#result table"))

        def wall_and_print():
            d.set_window_size(1920, 1080)
            d.get(f"{url}/wall")
            wait(d, lambda d: len(css(d, "[data-card]")) == 8 and css(d, ".chart canvas"))
            assert not css(d, "header.top nav"), "the wall has no controls"
            if args.shots:
                d.save_screenshot(f"{args.shots}/wall.png")
            d.set_window_size(794, 1123)
            d.get(f"{url}/print")
            wait(d, lambda d: len(css(d, "[data-card]")) == 8 and len(css(d, ".chart canvas")) >= 3)
            assert len(css(d, ".source .lineage")) >= 3, "the briefing names its snapshot"
            if args.shots:
                d.save_screenshot(f"{args.shots}/print.png")
            pdf = d.execute_cdp_cmd("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69})
            assert len(pdf["data"]) > 10000

        def phone_has_no_sideways_scroll():
            d.set_window_size(375, 800)
            d.get(f"{url}/overview")
            wait(d, lambda d: len(css(d, "[data-card]")) == 8 and css(d, ".grid2 .chart canvas"))
            sw, iw = d.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            assert sw <= iw, f"scrolls sideways: {sw} > {iw}"
            if args.shots:
                d.save_screenshot(f"{args.shots}/phone.png")
            d.set_window_size(1366, 900)

        def a_district_sees_only_itself():
            login(d, url, "a-viewer")
            seen = []
            for path in ("/overview", "/trends?level=street", "/rank", "/stations", "/volunteers", "/quality", "/exports"):
                d.get(url + path)
                wait(d, lambda d: css(d, "#view h1"))
                time.sleep(0.5)
                seen.append(d.find_element(By.TAG_NAME, "body").text)
                seen.append(d.page_source)
                seen.append(chart_options(d))
            everything = "\n".join(seen)
            for other in ("330212", "鄞州", "onerror"):
                assert other not in everything, f"{other} shown to district 330203"
            assert "海曙区" in everything
            nav = [a.text for a in css(d, "header.top nav a")]
            assert "查询" not in nav and "SQL" not in nav, nav
            d.get(f"{url}/sql")
            wait(d, lambda d: "/overview" in d.current_url)

        check("login, and the overview's figures equal the API's answers", overview_equals_the_api)
        check("drill-down city → district → street → station and back", drill_down_and_back)
        check("downloads are pinned to the snapshot the page names", downloads_are_pinned_to_the_snapshot_shown)
        check("language switch", language_switch)
        check("a hostile station name is text", hostile_names_are_text)
        check("every view: no console error, no other origin", every_view_without_errors_or_other_origins)
        check("the SQL view says why it refuses DDL", sql_refuses_ddl)
        check("wall and print render", wall_and_print)
        check("phone: no sideways scrolling", phone_has_no_sideways_scroll)
        check("a district's token sees only its district", a_district_sees_only_itself)
    finally:
        d.quit()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
