#!/usr/bin/env python3
"""Writes a wheel and an sdist of a tiny pure-Python project, deterministically, without any
build backend: `make_dist.py OUTDIR NAME VERSION [REQUIRES ...]`. Each module exposes
`VERSION` so a test can see which one pip installed. `WHARF_DIST_PAYLOAD=N` adds N bytes of
incompressible data to the wheel (the benchmark's realistic sizes)."""
import base64, hashlib, io, os, sys, tarfile, zipfile

out, name, version, *requires = sys.argv[1:]
os.makedirs(out, exist_ok=True)
mod = name.lower().replace("-", "_").replace(".", "_")
dist = name.replace("-", "_").replace(".", "_")
metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test package {name}\nRequires-Python: >=3.8\n"
for r in requires:
    metadata += f"Requires-Dist: {r}\n"
code = f'VERSION = "{version}"\n'
info = f"{dist}-{version}.dist-info"
files = {
    f"{mod}/__init__.py": code,
    f"{info}/METADATA": metadata,
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: wharf-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
payload = int(os.environ.get("WHARF_DIST_PAYLOAD", "0"))
if payload:
    files[f"{mod}/payload.bin"] = os.urandom(payload)
record = ""
for path, text in files.items():
    data = text if isinstance(text, bytes) else text.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record += f"{path},sha256={digest},{len(data)}\n"
record += f"{info}/RECORD,,\n"
files[f"{info}/RECORD"] = record
wheel = os.path.join(out, f"{dist}-{version}-py3-none-any.whl")
with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
    for path, text in files.items():
        zi = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
        z.writestr(zi, text)
sdist = os.path.join(out, f"{dist}-{version}.tar.gz")
with tarfile.open(sdist, "w:gz") as t:
    for path, text in {f"{dist}-{version}/PKG-INFO": metadata, f"{dist}-{version}/{mod}/__init__.py": code}.items():
        data = text.encode()
        ti = tarfile.TarInfo(path); ti.size = len(data); ti.mtime = 0
        t.addfile(ti, io.BytesIO(data))
print(wheel); print(sdist)
