#!/usr/bin/env python3
"""Screenshot a page in headless Chromium: `screenshot.py URL OUT.png [--local-storage K=V] [--wait-for TEXT]`.

With --local-storage the values are put in the page's origin first (a web app's session token, say), then
URL is loaded; with --wait-for the shot is taken once TEXT shows on the page, and it fails if it never does.
"""

import argparse
import sys
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--local-storage", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--wait-for", metavar="TEXT")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--size", default="1280,800")
    args = parser.parse_args()

    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={args.size}")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        if args.local_storage:
            parts = urlsplit(args.url)
            driver.get(f"{parts.scheme}://{parts.netloc}/favicon.png")  # any page of the origin
            for item in args.local_storage:
                key, _, value = item.partition("=")
                driver.execute_script("window.localStorage.setItem(arguments[0], arguments[1]);", key, value)
        driver.get(args.url)
        if args.wait_for:
            try:
                WebDriverWait(driver, args.timeout).until(
                    lambda d: args.wait_for in d.find_element(By.TAG_NAME, "body").text
                )
            except TimeoutException:
                driver.save_screenshot(args.out)
                text = driver.find_element(By.TAG_NAME, "body").text
                print(f"screenshot: {args.wait_for!r} never showed on {driver.current_url}; page text: {text[:500]!r}")
                return 1
        driver.save_screenshot(args.out)
        print(f"screenshot: {driver.current_url} -> {args.out}")
        return 0
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
