"""A planner authors exercises in a real browser: uploads a broken scenario zip (the problem shown with
its file and line) and a good one (kept, its quarantined rows shown), edits the events list, and compares
two rule sets on the sample scenario (the RQ worker of `python app.py` runs the backtest)."""

from __future__ import annotations

import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from ..test_upload import folder_entries, own_folder, zip_of
from .conftest import click, severe_console_errors, sign_in, wait

pytestmark = pytest.mark.browser


def upload(driver, upload_id: str, path) -> None:
    field = driver.find_element(By.CSS_SELECTOR, f"#{upload_id} input[type=file]")
    field.send_keys(str(path))


def test_upload_a_broken_zip_then_a_good_one(app_server, browser, tmp_path):
    base, _client, data = app_server
    sign_in(browser, base, "planner", path="/exercise")
    wait(browser).until(EC.presence_of_element_located((By.ID, "exu-upload")))
    entries = folder_entries(own_folder(tmp_path / "src"))
    broken = dict(entries, **{"scenario.yaml": entries["scenario.yaml"].replace(b"injects:", b"injects: [")})
    (tmp_path / "broken.zip").write_bytes(zip_of(broken))
    upload(browser, "exu-upload", tmp_path / "broken.zip")
    error = wait(browser).until(EC.visibility_of_element_located((By.ID, "exu-error")))
    assert "scenario.yaml:" in error.text and "invalid YAML" in error.text, error.text
    assert not any(p.name[0] != "." for p in (data / "scenarios").iterdir()) if (data / "scenarios").exists() else True

    (tmp_path / "good.zip").write_bytes(zip_of(entries))
    upload(browser, "exu-upload", tmp_path / "good.zip")
    kept = wait(browser).until(EC.visibility_of_element_located((By.ID, "exu-kept")))
    assert "rule_zone_incident" in kept.text and "1" in kept.text
    table = browser.find_element(By.ID, "exu-quarantine")
    assert "incidents.csv" in table.text and "5" in table.text  # the garbled position, line 5
    # the drill form now offers it
    click(browser, browser.find_element(By.ID, "ex-scenario"))
    option = wait(browser).until(EC.element_to_be_clickable(
        (By.XPATH, "//*[contains(text(), 'rule_zone_incident (uploaded')]")))
    click(browser, option)
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "ex-scenario"), "uploaded"))
    assert severe_console_errors(browser) == []


def test_the_comparison_shows_the_table_for_two_rule_sets(app_server, browser):
    base, _client, _data = app_server
    sign_in(browser, base, "planner", path="/exercise")
    wait(browser).until(EC.presence_of_element_located((By.ID, "exb-panel")))
    box = browser.find_element(By.XPATH, "//div[@id='exb-project-rules']//label[contains(., 'rules_sensitive.yaml')]")
    click(browser, box)
    click(browser, browser.find_element(By.ID, "exb-run"))
    wait(browser, 120).until(EC.presence_of_element_located((By.ID, "exb-table-yellow")))
    table = browser.find_element(By.ID, "exb-table-yellow")
    heads = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    assert heads[1:] == ["scenario", "rules_sensitive"], heads
    rows = {tr.get_attribute("data-key"): [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")}
    assert rows["hits"][1] == rows["hits"][2] and int(rows["hits"][1]) > 0
    assert "★" in "".join(rows["false_alarms"])  # the fewer false alarms are marked
    # the charts are drawn by Plotly after the table is in place: wait for them, do not race them
    wait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[id*='exb-chart'] .js-plotly-plot"))
    for level in ("orange", "red"):
        assert browser.find_element(By.ID, f"exb-table-{level}")
    # a fresh page shows no result until the backtest is picked from the recent list, whose Show
    # buttons stay the same elements while the page polls (the list is drawn only when it changes)
    browser.execute_script("sessionStorage.clear();")
    browser.refresh()
    show = wait(browser).until(EC.element_to_be_clickable((By.XPATH, "//div[@id='exb-recent']//button")))
    time.sleep(2.5)
    assert show.is_enabled() and not browser.find_elements(By.ID, "exb-table-yellow")  # still the same element
    click(browser, show)
    wait(browser, 30).until(EC.presence_of_element_located((By.ID, "exb-table-yellow")))
    assert severe_console_errors(browser) == []


def test_the_events_list_is_edited_in_the_table_and_saved_as_a_new_scenario(app_server, browser):
    from selenium.webdriver.common.keys import Keys

    base, _client, data = app_server
    sign_in(browser, base, "planner", path="/exercise")
    wait(browser).until(EC.presence_of_element_located((By.ID, "exe-panel")))
    click(browser, browser.find_element(By.ID, "exe-scenario"))
    # an option of the open menu (the page also names an uploaded copy, "rule_zone_incident (uploaded ...)",
    # in its list of kept scenarios)
    click(browser, wait(browser).until(EC.element_to_be_clickable(
        (By.XPATH, "//*[contains(@class, 'dash-dropdown-option')][normalize-space(.)='rule_zone_incident']"))))
    # the choice is in the dropdown before Load is pressed (else the default scenario's events load)
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "exe-scenario"), "rule_zone_incident"))
    click(browser, browser.find_element(By.ID, "exe-load"))
    first_at = (By.CSS_SELECTOR, "#exe-grid .ag-row[row-index='0'] .ag-cell[col-id='at']")
    wait(browser).until(EC.text_to_be_present_in_element(first_at, "2h30m"))  # the grid redraws when loaded
    cell = wait(browser).until(EC.element_to_be_clickable(first_at))
    assert cell.text == "2h30m"
    click(browser, cell)
    editor = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#exe-grid .ag-cell[col-id='at'] input")))
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys("2h45m", Keys.ENTER)
    wait(browser).until(EC.text_to_be_present_in_element(
        (By.CSS_SELECTOR, "#exe-grid .ag-row[row-index='0'] .ag-cell[col-id='at']"), "2h45m"))
    click(browser, browser.find_element(By.ID, "exe-save"))
    saved = wait(browser).until(EC.visibility_of_element_located((By.ID, "exe-saved")))
    sid = saved.text.split()[2]
    assert "at: 2h45m" in (data / "scenarios" / sid / "scenario.yaml").read_text()
    assert severe_console_errors(browser) == []
