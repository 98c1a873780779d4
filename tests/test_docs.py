"""The documentation site: built from the notebooks, served on 127.0.0.1, read in headless Chromium.

Checks what a reader sees: the title, an API entry with its parameter docs, figures that load, formulas typeset by
the MathJax copy served with the site, no progress-bar noise, and working links between pages. Screenshots of the
overview page and of the merge.ops page are saved as _docs/screenshot.png and _docs/merge_ops.png."""
import functools, http.server, json, shutil, subprocess, sys, threading, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT/'_docs'


def _ensure_chromium():
    "Install Debian's chromium and chromium-driver when missing (CI runs as root)."
    if shutil.which('chromium') and shutil.which('chromedriver'): return
    subprocess.run(['apt-get', 'update', '-qq'], check=True)
    subprocess.run(['apt-get', 'install', '-y', '-qq', 'chromium', 'chromium-driver'], check=True,
                   env={'DEBIAN_FRONTEND': 'noninteractive', 'PATH': '/usr/sbin:/usr/bin:/sbin:/bin'})


@pytest.fixture(scope='module')
def site():
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py'), '--out', str(DOCS)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(DOCS))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}'
    srv.shutdown()


@pytest.fixture(scope='module')
def browser():
    _ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    o.binary_location = shutil.which('chromium')
    for a in ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic',
              '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
              '--window-size=1280,900']:
        o.add_argument(a)
    d = webdriver.Chrome(service=Service(shutil.which('chromedriver')), options=o)
    yield d
    d.quit()


def pages(): return json.loads((DOCS/'pages.json').read_text())


def test_overview_page(site, browser):
    from selenium.webdriver.common.by import By
    browser.get(site + '/index.html')
    assert 'vlmerge' in browser.title
    assert browser.find_element(By.TAG_NAME, 'h1').text == 'vlmerge'
    main = browser.find_element(By.TAG_NAME, 'main').text
    assert 'make test' in main and 'output-file:' not in main      # no Quarto front matter shown
    browser.save_screenshot(str(DOCS/'screenshot.png'))
    assert (DOCS/'screenshot.png').stat().st_size > 10_000


def test_sidebar_lists_every_notebook_in_order(site, browser):
    from selenium.webdriver.common.by import By
    browser.get(site + '/index.html')
    links = [a.get_attribute('href').rsplit('/', 1)[-1] for a in browser.find_elements(By.CSS_SELECTOR, '#sidebar li a')]
    nbs = sorted(p.stem for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_') and p.stem != 'index')
    assert links == ['index.html'] + [f'{n}.html' for n in nbs]


def test_links_between_pages_work(site, browser):
    from selenium.webdriver.common.by import By
    for p in pages():
        browser.get(f"{site}/{p['page']}")
        assert browser.find_element(By.TAG_NAME, 'h1').text, p['page']
        for a in browser.find_elements(By.CSS_SELECTOR, '#sidebar a, .pager a'):
            href = a.get_attribute('href')
            assert urllib.request.urlopen(href).status == 200, href
    # clicking through: next links walk the whole site
    browser.get(site + '/index.html'); seen = [browser.current_url]
    while True:
        nxt = [a for a in browser.find_elements(By.CSS_SELECTOR, '.pager a') if a.text.endswith('→')]
        if not nxt: break
        nxt[0].click(); seen.append(browser.current_url)
    assert len(seen) == len(pages())


def test_api_entry_shows_signature_and_parameter_docs(site, browser):
    from selenium.webdriver.common.by import By
    browser.get(site + '/00_core.html')
    entries = browser.find_elements(By.CSS_SELECTOR, '.apientry')
    save = [e for e in entries if e.text.startswith('save_sd')]
    assert save, [e.text[:40] for e in entries]
    text = save[0].text
    assert 'Save `sd` to one safetensors file, atomically.' in text or 'Save sd to one safetensors file, atomically.' in text
    assert 'destination .safetensors file' in text          # a parameter's docment


def test_figures_load(site, browser):
    from selenium.webdriver.common.by import By
    plotted = [p.stem for p in (ROOT/'nbs').glob('*.ipynb') if 'plt.' in p.read_text() or '.plot(' in p.read_text()]
    n = 0
    for p in pages():
        browser.get(f"{site}/{p['page']}")
        for img in browser.find_elements(By.CSS_SELECTOR, 'main figure img'):
            assert browser.execute_script('return arguments[0].complete && arguments[0].naturalWidth', img) > 0, p['page']
            n += 1
    if plotted: assert n > 0, f"notebooks {plotted} plot, but the site shows no figure"


def test_formulas_render(site, browser):
    "Every formula on the merge.ops page is typeset by MathJax (served from the site itself, fetched from nowhere else)."
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get(site + '/04_merge.ops.html')
    spans = browser.find_elements(By.CSS_SELECTOR, 'main span.math')
    assert len(spans) > 5, 'the merge.ops notebook writes its formulas in TeX'
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, 'main span.math mjx-container svg')) == len(spans))
    svg = browser.find_element(By.CSS_SELECTOR, 'main span.math mjx-container svg')
    assert svg.size['width'] > 0 and svg.size['height'] > 0
    scripts = [s.get_attribute('src') for s in browser.find_elements(By.CSS_SELECTOR, 'script[src]')]
    assert scripts and all(s.startswith(site) for s in scripts), scripts      # offline: served by the site
    h = browser.execute_script('return document.body.scrollHeight')
    browser.set_window_size(1280, min(h, 6000)); browser.save_screenshot(str(DOCS/'merge_ops.png'))
    browser.set_window_size(1280, 900)
    assert (DOCS/'merge_ops.png').stat().st_size > 10_000 and browser.find_elements(By.CSS_SELECTOR, 'main figure img')


def test_no_progress_bar_noise(site, browser):
    from selenium.webdriver.common.by import By
    for p in pages():
        browser.get(f"{site}/{p['page']}")
        text = browser.find_element(By.TAG_NAME, 'main').text
        assert '%|' not in text and 'it/s]' not in text, p['page']


def test_merge_and_distance_pages_show_their_figures(site, browser):
    "The α sweep and TIES' trimming (merge.ops), per-layer curves and a heat map (metrics.distance) are on the site."
    from selenium.webdriver.common.by import By
    for page, n in (('04_merge.ops', 2), ('05_metrics.distance', 1)):
        browser.get(f'{site}/{page}.html')
        imgs = browser.find_elements(By.CSS_SELECTOR, 'main figure img')
        assert len(imgs) >= n, (page, len(imgs))
        assert all(browser.execute_script('return arguments[0].complete && arguments[0].naturalWidth', i) > 0 for i in imgs), page
