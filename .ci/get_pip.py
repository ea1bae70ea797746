"""Stand-in for the pip bootstrap script ansible-test downloads from ci-files.testing.ansible.com.

ansible-test makes each sanity test's virtual environment without pip, then runs get-pip.py in it with pip's
own arguments. That host is not always reachable where PyPI is, so `make sanity` puts this script in
ansible-test's cache under the name it looks for: pip from the interpreter's ensurepip, then the pip release
ansible-test asks for, from PyPI.
"""

import subprocess
import sys

BOOTSTRAP_ONLY = ("--no-setuptools", "--no-wheel")

pip = [sys.executable, "-m", "pip"]
subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True)
if "--no-setuptools" in sys.argv:  # ensurepip brings setuptools along on Python < 3.12
    subprocess.run([*pip, "uninstall", "--yes", "--quiet", "setuptools"], check=True)
subprocess.run([*pip, "install", *(arg for arg in sys.argv[1:] if arg not in BOOTSTRAP_ONLY)], check=True)
