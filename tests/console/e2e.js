// The console in a real headless Chromium (Debian's), driven by playwright-core:
//   node e2e.js PHASE BASE_URL USER PASSWORD SCREENSHOT_DIR
// PHASE is `create` (log in, create one repository of each format and type through the forms,
// check errors next to fields, usage pages, the language switch), `browse` (see the artifact a
// real client uploaded, delete it and a repository from the console), `roundtrip` (Edit → Save,
// untouched, on the rt-* repositories) or `reader` (a read-only user sees no admin pages and
// cannot call them). Exits non-zero on the first failed check.
"use strict";
const path = require("path");
const { chromium } = require(path.join(__dirname, "../../target/test-npm/node_modules/playwright-core"));

const [phase, base, user, password, shots, freePort, ldapPort] = process.argv.slice(2);

function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
}

const AXE = require("fs").readFileSync(path.join(__dirname, "../../target/test-npm/node_modules/axe-core/axe.min.js"), "utf8");
const a11yProblems = [];

/// axe-core on the page as drawn: serious and critical violations are collected, and the run
/// fails at its end listing them all (page.evaluate is not held to the console's CSP).
async function a11y(page, what) {
  await page.evaluate(AXE);
  const found = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | ")}`));
  for (const f of found) a11yProblems.push(`${what}: ${f}`);
}

/// Latin words on the page outside code, data the test made and proper names: what the
/// console left untranslated.
const NOT_ENGLISH = new Set(("ui rt nx admin wharf docker pypi npm ldap ldaps api http https id url mib kib gib tib ok s3 pip uv twine yarn npmrc pypirc " +
  "pyproject toml conf yml yarnrc cron dn starttls tls sha256 ms dc cn ou example test alice corp corp2 hosted proxy group readers reader user browsers store " +
  "old console pkg app team port usage bad empty all anonymous default dist tag uma com username python webhook " +
  // The audit log's objects are names as stored: a built-in task's is English.
  "upload sweep").split(" "));
async function untranslated(page) {
  return page.evaluate((allowed) => {
    const words = new Set();
    const walker = document.createTreeWalker(document.querySelector("main"), NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      const el = walker.currentNode.parentElement;
      // What the server wrote in English is marked lang="en" (its messages have no code yet);
      // what uploaders wrote (summaries, descriptions) translate="no".
      if (!el || el.closest("code, pre, option, select, textarea, [lang=en], [translate=no]") || !el.offsetParent) continue;
      for (const w of walker.currentNode.textContent.split(/[^A-Za-z0-9]+/)) {
        if (/[A-Za-z]{2,}/.test(w) && !allowed.includes(w.toLowerCase()) && !/^\d/.test(w)) words.add(w);
      }
    }
    return [...words];
  }, [...NOT_ENGLISH]);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

/// Opens a console route and waits until that view is drawn.
async function view(page, route) {
  if (route !== null) await page.goto(base + "/#/" + route);
  await page.waitForFunction((r) => document.getElementById("main").dataset.view === r, route);
}

/// Waits for the view of `route` after a click navigated there.
async function arrived(page, route) {
  await page.waitForFunction((r) => document.getElementById("main").dataset.view === r, route);
}

async function login(page, u, p, hash) {
  await page.goto(base + "/" + (hash || ""));
  await page.waitForSelector("#f-username");
  check(await page.locator("#top").isHidden(), "the login page shows no menu and no Log out");
  await page.getByLabel(/User name|用户名/).fill(u);
  await page.getByLabel(/^Password$|^密码$/).fill(p);
  await shot(page, `login-${phase}`);
  await a11y(page, "login");
  await page.getByRole("button", { name: /Sign in|登录/ }).click();
  await page.waitForSelector("#top:not([hidden])");
}

/// The page's text has no "null" or "undefined" printed in place of something absent.
async function noPlaceholders(page, what) {
  const text = await page.textContent("main");
  check(!/null|undefined/.test(text), `${what} prints no null/undefined: ${text.slice(0, 200)}`);
}

async function createRepo(page, format, kind, name, fill) {
  await view(page, "repositories/new");
  await page.selectOption("#f-format", format);
  await page.selectOption("#f-type", kind);
  await page.fill("#f-name", name);
  if (fill) await fill();
  await noPlaceholders(page, `the ${format} ${kind} form`);
  await page.getByRole("button", { name: /^Create$/ }).click();
  await arrived(page, `repositories/${name}/usage`);
  const text = await page.textContent("main");
  check(text.includes(name), `usage page of ${name} names it`);
}

/// Controls drawn narrower than their content, and anything wider than the screen outside the
/// tables' own scrolling boxes (for a phone-sized screen).
async function cutShort(page) {
  return page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll("main select, main button, main input:not([type=checkbox]), header select, header button")) {
      if (el.offsetParent && el.scrollWidth > el.clientWidth + 1) out.push(`${el.tagName} ${el.id || el.textContent.slice(0, 20)}: ${el.clientWidth}/${el.scrollWidth}`);
    }
    if (document.documentElement.scrollWidth > window.innerWidth + 1) {
      const wide = [...document.querySelectorAll("main *")].filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest(".scroll"))
        .slice(0, 3).map((e) => `${e.tagName}.${e.className} ${e.textContent.slice(0, 30)}`);
      out.push(`the page is ${document.documentElement.scrollWidth} px wide: ${wide.join(", ")}`);
    }
    return out;
  });
}

/// The components API's id of a component.
function componentId(repo, name, version) { return Buffer.from(`${repo}\n${name}\n${version}`).toString("base64url"); }

/// Sizes as the console writes them.
function size(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

async function componentJson(page, id) {
  return page.evaluate(async (i) => (await fetch(`/service/rest/v1/components/${i}`, { headers: { "X-Requested-With": "XMLHttpRequest" } })).json(), id);
}

/// The detail pages of the image, npm package and PyPI release the test pushed, in the
/// language on screen: the values the API gives are the ones shown; only admins get buttons.
async function componentPages(page, admin, suffix, withPypi) {
  const docker = componentId("ui-docker-hosted", "team/app", "v1");
  await view(page, `component/${docker}`);
  const c = await componentJson(page, docker);
  const text = await page.textContent("main");
  const host = new URL(base).host;
  check(text.includes(`docker pull ${host}/ui-docker-hosted/team/app:v1`), `the pull command names this host and the repository: ${text}`);
  check(c.details.totalSize > c.assets[0].fileSize && text.includes(size(c.details.totalSize)), `the image's total size (${c.details.totalSize}), not the manifest's, is shown`);
  const layerRows = await page.locator("main table").nth(1).locator("tbody tr").count();
  check(layerRows === c.details.layers.length + 1, `the config and every layer are listed (${layerRows})`);
  for (const v of [c.details.layers[0].digest, c.details.config.digest, c.assets[0].checksum.sha256, "admin", "127.0.0.1"]) check(text.includes(v), `the image's page shows ${v}`);
  check((await page.locator("main button.danger").count()) === (admin ? 1 : 0), "only admins get a Delete button");
  await noPlaceholders(page, "the image's page");
  await a11y(page, `component docker${suffix}`);
  await shot(page, `component-docker${suffix}`);
  const left = [];
  const english = async (what) => { const w = await untranslated(page); if (w.length) left.push(`${what}: ${w.join(" ")}`); };
  await english("docker");

  const npm = componentId("ui-npm-hosted", "ui-console-npm", "1.0.0");
  await view(page, `component/${npm}`);
  const n = await componentJson(page, npm);
  const npmText = await page.textContent("main");
  check(n.details.distTags.includes("latest") && npmText.includes("latest"), `the dist-tags naming the version are shown: ${npmText}`);
  check(npmText.includes(n.assets[0].checksum.sha512) && npmText.includes(n.assets[0].checksum.sha1), "every checksum of the tarball is shown");
  // The README is text: its markup is shown, never run or rendered.
  check((await page.textContent("main pre.readme")).includes("<script>alert('readme')</script>"), "the README is shown as written");
  check((await page.locator("main pre.readme *").count()) === 0, "and holds no elements");
  await noPlaceholders(page, "the npm version's page");
  await a11y(page, `component npm${suffix}`);
  await shot(page, `component-npm${suffix}`);
  await english("npm");

  if (withPypi) {
    const pypi = componentId("ui-pypi-hosted", "ui-console-pkg", "1.0");
    await view(page, `component/${pypi}`);
    const pypiText = await page.textContent("main");
    check(pypiText.includes("test package ui-console-pkg") && pypiText.includes(">=3.8") && pypiText.includes("ui_console_pkg-1.0-py3-none-any.whl"),
      `the release's summary, requires-python and files are shown: ${pypiText}`);
    check((await page.locator("main .actions button.secondary").count()) === (admin ? 1 : 0), "admins may yank");
    await noPlaceholders(page, "the PyPI release's page");
    await a11y(page, `component pypi${suffix}`);
    await shot(page, `component-pypi${suffix}`);
    await english("pypi");
  }
  // On a phone: nothing cut short, nothing wider than the screen.
  if (suffix === "") {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const [id, what] of [[docker, "docker"], [npm, "npm"]]) {
      await view(page, `component/${id}`);
      const cut = await cutShort(page);
      check(cut.length === 0, `on a phone, the ${what} component page cuts controls short: ${cut.join("; ")}`);
      await shot(page, `phone-component-${what}`);
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  }
  return left;
}

async function main() {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu"] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "en-US" });
  const page = await context.newPage();
  page.on("dialog", (d) => d.accept());
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(base)) external.push(r.url()); });
  try {
    if (phase === "create") {
      await login(page, user, password);
      await arrived(page, "");
      check((await page.textContent("main h1")).includes("Dashboard"), "dashboard after login");
      // The session cookie is HttpOnly: the page's scripts cannot read it.
      check(!(await page.evaluate(() => document.cookie)).includes("wharf_session"), "the session cookie is not readable by scripts");
      for (const format of ["docker", "pypi", "npm"]) {
        await createRepo(page, format, "hosted", `ui-${format}-hosted`);
        check(/docker push|npm publish|twine/.test(await page.textContent("main")), "a hosted repository's usage page shows how to upload");
        await createRepo(page, format, "proxy", `ui-${format}-proxy`);
        // A proxy's usage page shows no upload commands; its page shows the upstream's state.
        const proxyUsage = await page.textContent("main");
        check(!/docker push|npm publish|twine|uv publish/.test(proxyUsage), `no upload commands for a proxy: ${proxyUsage}`);
        await view(page, `repositories/ui-${format}-proxy`);
        check((await page.textContent("main")).includes("Upstream"), "a proxy's page shows its upstream");
        // Members in the order picked, then reordered: the proxy first.
        await createRepo(page, format, "group", `ui-${format}-group`, async () => {
          for (const m of [`ui-${format}-hosted`, `ui-${format}-proxy`]) {
            await page.selectOption("#f-group\\.memberNames", m);
            await page.getByRole("button", { name: /^Add$/ }).click();
          }
          await page.getByRole("button", { name: `Move ui-${format}-proxy up` }).click();
        });
        const group = await page.evaluate(async (n) => (await fetch(`/service/rest/v1/repositories/${n.split("-")[1]}/group/${n}`, { headers: { "X-Requested-With": "XMLHttpRequest" } })).json(), `ui-${format}-group`);
        check(JSON.stringify(group.group.memberNames) === JSON.stringify([`ui-${format}-proxy`, `ui-${format}-hosted`]), `members saved in the order set: ${JSON.stringify(group.group)}`);
      }
      // The name rule is checked by the browser (the pattern compiles under Chromium's v flag).
      await view(page, "repositories/new");
      await page.fill("#f-name", "bad name!");
      check(!(await page.$eval("#f-name", (e) => e.checkValidity())), "an invalid name fails the form's own check");
      await page.fill("#f-name", "good-name_1.x");
      check(await page.$eval("#f-name", (e) => e.checkValidity()), "a valid name passes it");
      // The current page is marked in the menu; disabled buttons look it; the console has an icon.
      check(await page.getAttribute('header a[href="#/repositories/new"]', "aria-current") === "page", "Create repository is the current page");
      check(await page.getAttribute('header a[href="#/"]', "aria-current") === null, "Dashboard is not");
      check((await page.evaluate(async () => (await fetch(document.querySelector('link[rel="icon"]').href)).status)) === 200, "a favicon");
      await shot(page, "usage");
      // A wrong field gets its message next to it.
      await view(page, "repositories/new");
      await page.selectOption("#f-format", "pypi");
      await page.selectOption("#f-type", "proxy");
      await page.fill("#f-name", "ui-bad-proxy");
      await page.fill("#f-proxy\\.remoteUrl", "ftp://example.com/");
      await page.getByRole("button", { name: /^Create$/ }).click();
      await page.waitForFunction(() => (document.querySelector('[data-error-for="proxy.remoteUrl"]') || {}).textContent);
      check((await page.textContent('[data-error-for="proxy.remoteUrl"]')).includes("http"), "the remote URL error sits next to its field");
      await shot(page, "create-form-error");
      // A port another repository holds: the message sits at the port field.
      await createRepo(page, "docker", "hosted", "ui-docker-port", async () => { await page.fill("#f-docker\\.httpPort", freePort); });
      // Its usage page names its own port (plain HTTP here: the insecure-registries entry).
      const usage = await page.textContent("main");
      check(usage.includes(`docker login 127.0.0.1:${freePort}`) && usage.includes(`"insecure-registries": ["127.0.0.1:${freePort}"]`), `the usage page names the repository's port: ${usage}`);
      await view(page, "repositories/new");
      await page.selectOption("#f-format", "docker");
      await page.selectOption("#f-type", "hosted");
      await page.fill("#f-name", "ui-docker-port2");
      await page.fill("#f-docker\\.httpPort", freePort);
      await page.getByRole("button", { name: /^Create$/ }).click();
      await page.waitForFunction(() => (document.querySelector('[data-error-for="docker.httpPort"]') || {}).textContent);
      await view(page, "repositories/new");
      await page.selectOption("#f-format", "pypi");
      await page.selectOption("#f-type", "proxy");
      // A group without members: the message sits at the members field.
      await page.selectOption("#f-type", "group");
      await page.fill("#f-name", "ui-empty-group");
      await page.getByRole("button", { name: /^Create$/ }).click();
      await page.waitForFunction(() => (document.querySelector('[data-error-for="group.memberNames"]') || {}).textContent);
      // The dashboard lists them all.
      await view(page, "");
      const dash = await page.textContent("main");
      for (const f of ["docker", "pypi", "npm"]) for (const k of ["hosted", "proxy", "group"]) check(dash.includes(`ui-${f}-${k}`), `dashboard lists ui-${f}-${k}`);
      await shot(page, "dashboard");
      // Chinese.
      await page.selectOption("#lang", "zh-CN");
      await page.waitForFunction(() => document.querySelector("header nav a").textContent === "概览");
      await shot(page, "dashboard-zh");
      await page.selectOption("#lang", "en");
      // A phone-sized screen.
      await page.setViewportSize({ width: 390, height: 844 });
      await view(page, "");
      await shot(page, "dashboard-phone");
      await page.setViewportSize({ width: 1280, height: 800 });
      // A user and a role, made and changed in the console.
      await view(page, "roles");
      await page.fill("#f-id", "ui-readers");
      await page.fill("#f-description", "读取全部");
      // The typed picker: all formats, all repositories, read.
      await page.getByLabel("Action").selectOption("read");
      await page.locator("fieldset.picker .actions").first().getByRole("button", { name: "Add" }).click();
      check((await page.textContent("fieldset.picker ul")).includes("nx-repository-view-*-*-read"), "the picked privilege is listed");
      await page.getByRole("button", { name: /^Create$/ }).click();
      await page.waitForFunction(() => document.querySelector("main table").textContent.includes("ui-readers"));
      check((await page.textContent("main")).includes("Role ui-readers created."), "a notice says the role was made");
      // A second role: browse on one PyPI repository, containing the first.
      await page.fill("#f-id", "ui-pypi-browsers");
      await page.getByLabel("Format").selectOption("pypi");
      await page.getByLabel("Repository", { exact: true }).selectOption("ui-pypi-hosted");
      await page.getByLabel("Action").selectOption("browse");
      await page.locator("fieldset.picker .actions").first().getByRole("button", { name: "Add" }).click();
      await page.getByRole("checkbox", { name: "ui-readers" }).check();
      await shot(page, "role-picker");
      await page.getByRole("button", { name: /^Create$/ }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("Role ui-pypi-browsers created."));
      const made = await page.evaluate(async () => (await fetch("/service/rest/v1/security/roles/ui-pypi-browsers", { headers: { "X-Requested-With": "XMLHttpRequest" } })).json());
      check(JSON.stringify(made.privileges) === JSON.stringify(["nx-repository-view-pypi-ui-pypi-hosted-browse"]) && JSON.stringify(made.roles) === JSON.stringify(["ui-readers"]),
        `the role as picked: ${JSON.stringify(made)}`);
      await view(page, "users");
      check(await page.getAttribute('header a[href="#/users"]', "aria-current") === "page", "Users is the current page");
      await view(page, "users/admin");
      const ownDelete = page.locator("main button.danger[disabled]").first();
      check(Number(await ownDelete.evaluate((b) => getComputedStyle(b).opacity)) < 0.6, "a disabled button (one's own Delete) looks disabled");
      await view(page, "users");
      await page.fill("#f-userId", "ui-user");
      await page.fill("#f-password", "ui-user-password");
      await page.getByRole("checkbox", { name: "ui-readers" }).check();
      await page.getByRole("button", { name: /^Create$/ }).click();
      await page.waitForFunction(() => document.querySelector("main table").textContent.includes("ui-user"));
      check((await page.textContent("main")).includes("User ui-user created."), "a notice says the user was made");
      // Edit: names and e-mail in fields, and a password set in a form field (no prompt()).
      await page.getByRole("row", { name: /ui-user/ }).getByRole("link", { name: "Edit" }).click();
      await arrived(page, "users/ui-user");
      await page.fill("#f-firstName", "Uma");
      await page.fill("#f-lastName", "Reader");
      await page.fill("#f-emailAddress", "uma@example.test");
      await shot(page, "user-edit");
      await page.getByRole("button", { name: /^Save$/ }).click();
      await arrived(page, "users");
      check((await page.textContent("main table")).includes("Uma Reader"), "the edited name is listed");
      await view(page, "users/ui-user");
      await page.fill("#f-newPassword", "ui-user-password-2");
      await page.getByRole("button", { name: "Set password" }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("Password set."));
      // Offline and back online from the repository's page.
      await view(page, "repositories/ui-pypi-proxy");
      await page.getByRole("button", { name: "Take offline" }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("is offline"));
      const offline = await page.evaluate(async () => (await fetch("/repository/ui-pypi-proxy/simple/")).status);
      check(offline === 503, `an offline repository answers 503 (${offline})`);
      await page.getByRole("button", { name: "Bring online" }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("is online"));
      // Invalidate the proxy's cache: a notice, and the audit log has it.
      await page.getByRole("button", { name: "Invalidate cache" }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("asks its upstream again"));
      const invalidated = await page.evaluate(async () => (await fetch("/service/rest/v1/audit?action=repository.invalidate-cache", { headers: { "X-Requested-With": "XMLHttpRequest" } })).json());
      check(JSON.stringify(invalidated).includes("ui-pypi-proxy"), `the invalidation is audited: ${JSON.stringify(invalidated).slice(0, 300)}`);
      await view(page, "repositories/ui-pypi-hosted");
      check(await page.getByRole("button", { name: "Invalidate cache" }).count() === 0, "a hosted repository has no cache to invalidate");
      // The audit log shows what the console just did, filtered.
      await view(page, "audit");
      await page.fill("#f-action", "user.*");
      await page.getByRole("button", { name: /^Filter$/ }).click();
      await page.waitForFunction(() => document.querySelector("main table") && document.querySelector("main table").textContent.includes("user created"));
      check(!/\d{4}-\d\d-\d\dT/.test(await page.textContent("main table")), "audit times are shown in the reader's locale, not as ISO text");
      // An LDAP server, added and checked with the page's buttons (slapd from tests/ldap/fixture.ldif).
      await view(page, "ldap");
      const addLdap = async (name) => {
        await page.fill("#f-name", name);
        await page.fill("#f-host", "127.0.0.1");
        await page.fill("#f-port", ldapPort);
        await page.fill("#f-searchBase", "dc=example,dc=test");
        await page.fill("#f-authUsername", "cn=wharf-service,dc=example,dc=test");
        await page.fill("#f-authPassword", "service-secret");
        await page.getByRole("button", { name: /^Create$/ }).click();
        await page.waitForFunction((n) => document.querySelector("main").textContent.includes(`LDAP server ${n} saved.`), name);
      };
      await addLdap("ui-corp");
      check(await page.locator("label", { hasText: "Group object class" }).count() === 1, "the group mapping fields are labelled");
      await page.getByRole("button", { name: "Test connection" }).click();
      await page.waitForFunction(() => document.querySelector("main table").textContent.includes("✓"));
      await page.getByLabel("User name to try").fill("alice");
      await page.getByLabel("Their password").fill("alice-password");
      await page.getByRole("button", { name: "Test login" }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("✓ alice"));
      // Edited: the stored bind password stays when the field is left empty.
      await page.getByRole("row", { name: /ui-corp/ }).getByRole("link", { name: "Edit" }).click();
      await arrived(page, "ldap/ui-corp");
      await page.fill("#f-readTimeoutSeconds", "20");
      await page.getByRole("button", { name: /^Save$/ }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("LDAP server ui-corp saved."));
      await page.getByRole("button", { name: "Test connection" }).click();
      await page.waitForFunction(() => document.querySelector("main table").textContent.includes("✓"));
      // A second server, moved before the first.
      await addLdap("ui-corp2");
      await page.getByRole("button", { name: "Move ui-corp2 up" }).click();
      await page.waitForFunction(async () => {
        const l = await (await fetch("/service/rest/v1/security/ldap", { headers: { "X-Requested-With": "XMLHttpRequest" } })).json();
        return l.map((x) => x.name).join() === "ui-corp2,ui-corp";
      });
      await shot(page, "ldap-tested");
      // Blob stores: one made with a soft quota, listed, deleted.
      await view(page, "blobstores");
      await page.fill("#f-name", "ui-store");
      await page.fill("#f-softQuota", "1");
      await page.getByRole("button", { name: /^Create$/ }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("Blob store ui-store created."));
      check((await page.textContent("main table")).includes("1.0 MiB"), "the store's soft quota is shown");
      await page.getByRole("row", { name: /ui-store/ }).getByRole("button", { name: "Delete" }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("Blob store ui-store deleted."));
      // A cleanup policy, and its preview on a repository.
      await view(page, "cleanup");
      await page.fill("#f-name", "ui-old");
      await page.selectOption("#f-format", "pypi");
      await page.fill("#f-criteriaLastBlobUpdated", "30");
      await page.getByRole("button", { name: /^Create$/ }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("Cleanup policy ui-old created."));
      await page.getByLabel("Repository ui-old").selectOption("ui-pypi-hosted");
      await page.getByRole("button", { name: "Preview" }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("Would delete") || document.querySelector("main .notice.bad"));
      await shot(page, "cleanup-preview");
      check((await page.textContent("main")).includes("Would delete 0 components from ui-pypi-hosted"), `the preview says what it would delete: ${await page.textContent("main")}`);
      // A task run by hand, with its history.
      await view(page, "tasks");
      await page.getByRole("row", { name: /Upload sweep/ }).getByRole("button", { name: "Run now" }).click();
      await arrived(page, "tasks/upload-sweep");
      await page.waitForFunction(async () => {
        const r = await fetch("/service/rest/v1/tasks/upload-sweep/runs", { headers: { "X-Requested-With": "XMLHttpRequest" } });
        return (await r.json()).items.some((x) => x.result === "OK");
      });
      // Drawn again now that the run is over (the page on screen was drawn while it ran).
      await page.reload();
      await arrived(page, "tasks/upload-sweep");
      check(/removed 0 abandoned uploads/.test(await page.textContent("main")), "the run's message is in its history");
      // A webhook: made in the console for a repository, sent a test to a receiver of this
      // script's own, its delivery in the log, signed with the secret typed in.
      const received = [];
      const http = require("http");
      const receiver = http.createServer((req, res) => {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => { received.push({ headers: req.headers, body: Buffer.concat(chunks) }); res.writeHead(200).end(); });
      });
      await new Promise((ok) => receiver.listen(0, "127.0.0.1", ok));
      await view(page, "webhooks");
      await noPlaceholders(page, "the webhooks page");
      await page.fill("#f-name", "ui-app");
      await page.fill("#f-url", `http://127.0.0.1:${receiver.address().port}/hook`);
      await page.selectOption("#f-repository", "ui-pypi-hosted");
      check(await page.locator("input[type=checkbox][value=audit]").isDisabled(), "a repository's webhook takes no audit events");
      await page.locator("input[type=checkbox][value=asset]").check();
      await page.fill("#f-secret", "ui-secret");
      await page.getByRole("button", { name: /^Create$/ }).click();
      await arrived(page, "webhooks/ui-app");
      check((await page.textContent("main")).includes("Webhook ui-app created."), "the webhook is created");
      check(!(await page.content()).includes("ui-secret"), "the secret is not shown");
      await page.getByRole("button", { name: "Send test to ui-app" }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("queued"));
      for (let i = 0; i < 600 && !/delivered/.test(await page.textContent("main table")); i++) {
        await page.getByRole("button", { name: "Refresh" }).click();
        await page.waitForTimeout(100);
      }
      const hookLog = await page.textContent("main table");
      check(/wharf:ping/.test(hookLog) && /delivered/.test(hookLog) && /1: 200/.test(hookLog), `the test delivery is in the log: ${hookLog}`);
      check(received.length === 1, `the receiver got one delivery: ${received.length}`);
      const sig = require("crypto").createHmac("sha1", "ui-secret").update(received[0].body).digest("hex");
      check(received[0].headers["x-nexus-webhook-signature"] === sig && received[0].headers["x-nexus-webhook-id"] === "wharf:ping", "signed with the secret");
      // An edit that leaves the secret empty keeps it; a URL that is not http(s) is refused by the field.
      await page.fill("#f-url", "ftp://example.com/");
      await page.getByRole("button", { name: /^Save$/ }).click();
      await page.waitForFunction(() => document.querySelector('[data-error-for="url"]').textContent.length > 0);
      await page.fill("#f-url", `http://127.0.0.1:${receiver.address().port}/hook2`);
      await page.getByRole("button", { name: /^Save$/ }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("Webhook ui-app saved."));
      await shot(page, "webhook");
      const saved = await page.evaluate(async () => api("GET", "/webhooks/ui-app"));
      check(saved.hasSecret && saved.url.endsWith("/hook2") && saved.eventTypes.join() === "component,asset", `saved: ${JSON.stringify(saved)}`);
      receiver.close();
      // System: the status checks.
      await view(page, "system");
      check((await page.textContent("main")).includes("Database"), "the system page lists the checks");
      check(/wharf \d+\.\d+\.\d+/.test(await page.textContent("main dl")), "and the version");
      check((await page.locator("main table").first().locator("tbody tr").count()) === 1, "one node on SQLite");
      await noPlaceholders(page, "the system page");
      // Read-only mode: frozen from the system page with a reason, said on every page, a change
      // refused in words; released again.
      await page.getByLabel("Reason (optional)").fill("ui backup");
      await page.getByRole("button", { name: "Freeze (read-only)" }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("wharf is read-only now."));
      await view(page, "");
      await page.waitForFunction(() => !document.getElementById("frozen").hidden);
      const banner = await page.textContent("#frozen");
      check(banner.includes("Read-only mode since") && banner.includes("ui backup"), `the banner says so, with the reason: ${banner}`);
      await shot(page, "read-only");
      const refused = await page.evaluate(async () => {
        try { await api("POST", "/repositories/pypi/hosted", { name: "ui-frozen", storage: { blobStoreName: "default" } }); return "created"; } catch (e) { return e.message; }
      });
      check(refused.startsWith("wharf is in read-only mode"), `a change is refused in words: ${refused}`);
      await view(page, "system");
      await page.getByRole("button", { name: "Release" }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("wharf takes writes again."));
      check(await page.locator("#frozen").isHidden(), "no banner once released");
      // In Chinese, every page the console draws is Chinese but for names and code.
      await page.selectOption("#lang", "zh-CN");
      const english = [];
      for (const p of ["", "users", "users/ui-user", "roles", "roles/ui-readers", "ldap", "tokens", "audit", "blobstores", "cleanup", "tasks", "tasks/upload-sweep",
        "webhooks", "webhooks/ui-app", "account", "repositories/new", "repositories/ui-pypi-proxy", "browse/ui-docker-hosted", "search"]) {
        await view(page, p);
        const left = await untranslated(page);
        if (left.length) english.push(`${p || "dashboard"}: ${left.join(" ")}`);
      }
      // Server errors with a code the console knows are worded in Chinese; others keep the
      // server's words, marked as English.
      const said = await page.evaluate(async () => {
        const out = [];
        for (const body of [{ storage: { blobStoreName: "default" } }, { name: "zh-err", storage: { blobStoreName: "nope" } }]) {
          try { await api("POST", "/repositories/pypi/hosted", body); } catch (e) { out.push([e.message, e.english]); }
        }
        try { await api("GET", "/repositories/no-such-repo"); } catch (e) { out.push([e.message, e.english]); }
        return out;
      });
      check(said.length === 3 && said[0][0] === "name: 为必填项" && said[0][1] === false, `a coded error in Chinese: ${JSON.stringify(said)}`);
      check(said[2][0] === "仓库 no-such-repo 不存在。" && said[2][1] === false, `something not found, in Chinese with its name: ${JSON.stringify(said)}`);
      check(said[1][1] === true && said[1][0].includes("nope"), `an uncoded one in the server's words, marked English: ${JSON.stringify(said)}`);
      await page.selectOption("#lang", "en");
      check(english.length === 0, "English left in zh-CN:\n" + english.join("\n"));
      // On a phone: no control cut short, and nothing wider than the screen but the tables'
      // own scrolling boxes.
      await page.setViewportSize({ width: 390, height: 844 });
      for (const p of ["", "users", "users/ui-user", "roles", "ldap", "repositories/new", "blobstores", "cleanup", "tasks", "webhooks", "webhooks/ui-app", "account", "search"]) {
        await view(page, p);
        const cut = await cutShort(page);
        check(cut.length === 0, `on a phone, ${p || "dashboard"} cuts controls short: ${cut.join("; ")}`);
        await shot(page, "phone-" + (p.replace(/\//g, "-") || "dashboard"));
      }
      await page.setViewportSize({ width: 1280, height: 800 });
      for (const p of ["", "users", "users/ui-user", "roles", "roles/ui-readers", "tokens", "audit", "ldap", "ldap/ui-corp", "blobstores", "cleanup", "tasks", "tasks/upload-sweep",
        "webhooks", "webhooks/ui-app", "system", "account", "repositories/new", "repositories/ui-pypi-proxy", "repositories/ui-npm-hosted/usage", "browse", "browse/ui-docker-hosted", "search"]) {
        await view(page, p);
        await a11y(page, p || "dashboard");
        await shot(page, p.replace(/\//g, "-") || "dashboard-admin");
      }
      // The webhook goes from the list (its receiver is gone).
      await view(page, "webhooks");
      await page.getByRole("button", { name: "Delete ui-app" }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("Webhook ui-app deleted."));
      // Keyboard: the skip link and the login form work without a mouse.
      check(await page.evaluate(() => !!document.querySelector("a.skip")), "a skip link");
      // Logging out forgets who was signed in; a link opened before signing in is where the
      // sign-in leads.
      await page.getByRole("button", { name: "Log out" }).click();
      await page.waitForSelector("#f-username");
      check(await page.locator("#top").isHidden() && (await page.textContent("#who")) === "", "after logout no menu and no name");
      await login(page, user, password, "#/audit");
      await arrived(page, "audit");
    } else if (phase === "browse") {
      await login(page, user, password);
      // The repository's health check: off, then on from its page; the first check's report
      // shows once it ran.
      await view(page, "repositories/ui-pypi-hosted");
      check((await page.textContent("#health-check")).includes("never"), "a health check never run says so");
      await page.getByRole("button", { name: "Enable health check" }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("a first check runs now"));
      await page.waitForFunction(async () => (await (await fetch("/service/rest/v1/repositories/ui-pypi-hosted/health-check", { headers: { "X-Requested-With": "XMLHttpRequest" } })).json()).report !== null, null, { polling: 100 });
      await view(page, "");
      await view(page, "repositories/ui-pypi-hosted");
      check(await page.getAttribute("#health-check [data-health]", "data-health") === "ok", "the uploaded files are healthy");
      check((await page.textContent("#health-check")).includes("changes nothing"), "the card says the check changes nothing");
      check(await page.getByRole("button", { name: "Disable health check" }).count() === 1, "an enabled check can be disabled");
      await shot(page, "health-check");
      await a11y(page, "health check");
      await view(page, "browse/ui-pypi-hosted");
      check((await page.textContent("main")).includes("ui-console-pkg"), "browse shows the uploaded project");
      // The filter asks the server once typing pauses.
      await page.fill("#f-search", "no-such-thing");
      await page.waitForFunction(() => !document.querySelector("main table") && document.querySelector("main .paged p.muted"));
      await page.fill("#f-search", "console");
      await page.waitForFunction(() => (document.querySelector("main table") || {}).textContent?.includes("ui-console-pkg"));
      await shot(page, "browse");
      // Down the hierarchy: the image, its tag and its files.
      await view(page, "browse/ui-docker-hosted");
      await page.getByRole("link", { name: "team/app" }).click();
      await arrived(page, "browse/ui-docker-hosted/team/app");
      check((await page.textContent("main table")).includes("v1"), "the image's tag is listed");
      await shot(page, "browse-image");
      // Sixty more tags of the image: the tags come 50 a page from the server.
      const tagged = await page.evaluate(async ([u, p]) => {
        const auth = { Authorization: "Basic " + btoa(`${u}:${p}`) };
        const accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
        const m = await fetch("/v2/ui-docker-hosted/team/app/manifests/v1", { headers: { ...auth, Accept: accept } });
        const type = m.headers.get("content-type");
        const body = await m.text();
        let ok = 0;
        for (let i = 0; i < 60; i++) {
          const r = await fetch(`/v2/ui-docker-hosted/team/app/manifests/p${String(i).padStart(2, "0")}`, { method: "PUT", headers: { ...auth, "Content-Type": type }, body });
          if (r.status === 201) ok++;
        }
        return ok;
      }, [user, password]);
      check(tagged === 60, `60 tags pushed (${tagged})`);
      await view(page, "browse/ui-docker-hosted");
      await view(page, "browse/ui-docker-hosted/team/app");
      check((await page.locator("main table tbody tr").count()) === 50, "50 tags on the first page");
      check((await page.textContent(".paged .actions")).includes("Page 1"), "the page is numbered");
      await page.getByRole("button", { name: "Next page" }).click();
      await page.waitForFunction(() => document.querySelector(".paged .actions").textContent.includes("Page 2"));
      check((await page.locator("main table tbody tr").count()) === 11, "the other 11 on the second");
      check(await page.getByRole("button", { name: "Next page" }).isDisabled(), "and no third");
      await page.getByRole("button", { name: "Previous page" }).click();
      await page.waitForFunction(() => document.querySelector(".paged .actions").textContent.includes("Page 1"));
      // Search across repositories and formats, sorted on the server.
      await view(page, "search");
      await page.fill("#f-q", "ui-console");
      await page.getByRole("button", { name: "Search", exact: true }).click();
      await page.waitForFunction(() => { const t = document.querySelector("main table"); return t && t.textContent.includes("ui-console-npm") && t.textContent.includes("ui-console-pkg"); });
      await shot(page, "search");
      await page.fill("#f-q", "");
      await page.fill("#f-name", "team/app");
      await page.selectOption("#f-sort", "version");
      await page.selectOption("#f-direction", "asc");
      await page.getByRole("button", { name: "Search", exact: true }).click();
      await page.waitForFunction(() => (document.querySelector("main table tbody tr td:nth-child(2)") || {}).textContent === "p00");
      await page.getByRole("link", { name: "team/app" }).first().click();
      await arrived(page, "browse/ui-docker-hosted/team/app");
      await view(page, "browse/ui-pypi-hosted");
      await page.getByRole("link", { name: "ui-console-pkg" }).click();
      await arrived(page, "browse/ui-pypi-hosted/ui-console-pkg");
      check((await page.textContent("main table")).includes(".whl"), "the version's files are listed");
      // The npm package a real npm published, in its repository.
      await view(page, "browse/ui-npm-hosted");
      check((await page.textContent("main")).includes("ui-console-npm"), "browse shows the npm package");
      // Each version links to its detail page.
      await view(page, "browse/ui-docker-hosted/team/app");
      await page.getByRole("link", { name: "v1" }).click();
      await arrived(page, `component/${componentId("ui-docker-hosted", "team/app", "v1")}`);
      check(await page.textContent("main h1") === "team/app v1", "the version's detail page");
      // The detail pages, in English and in Chinese.
      await componentPages(page, true, "", true);
      await page.selectOption("#lang", "zh-CN");
      const componentEnglish = await componentPages(page, true, "-zh", true);
      await page.selectOption("#lang", "en");
      check(componentEnglish.length === 0, "English left in zh-CN component pages:\n" + componentEnglish.join("\n"));
      // Yank shows: a mark and Unyank; Unyank takes both away.
      await view(page, "browse/ui-pypi-hosted/ui-console-pkg");
      await page.getByRole("button", { name: "Yank" }).click();
      await page.waitForFunction(() => document.querySelector("main table .tag"));
      check((await page.textContent("main table")).includes("yanked"), "a yanked version is marked");
      await shot(page, "browse-yanked");
      await page.getByRole("button", { name: "Unyank" }).click();
      await page.waitForFunction(() => !document.querySelector("main table .tag") && document.querySelector("main table"));
      // Delete the uploaded version from its page.
      await view(page, "browse/ui-pypi-hosted/ui-console-pkg");
      await page.getByRole("button", { name: "Delete" }).first().click();
      await page.waitForFunction(() => !document.querySelector("main").textContent.includes(".whl"));
      // Delete a repository from its page.
      await view(page, "repositories/ui-npm-proxy");
      await page.getByRole("button", { name: "Delete" }).click();
      await arrived(page, "");
      check((await page.textContent("main")).includes("Repository ui-npm-proxy deleted."), "a notice says the repository was deleted");
      check(!(await page.textContent("main table")).includes("ui-npm-proxy"), "the deleted repository is gone");
    } else if (phase === "roundtrip") {
      // Edit → Save without touching anything, for each repository the test made with settings
      // the form does not show; the test compares the configuration before and after.
      await login(page, user, password);
      for (const name of ["rt-docker-proxy", "rt-npm-hosted", "rt-pypi-hosted", "rt-docker-hosted"]) {
        await view(page, `repositories/${name}/edit`);
        await page.getByRole("button", { name: /^Save$/ }).click();
        await arrived(page, `repositories/${name}/usage`);
      }
    } else if (phase === "reader") {
      // By keyboard only: the skip link, the login form, and the navigation.
      await page.goto(base + "/");
      await page.waitForSelector("#f-username");
      await page.focus("#f-username");
      await page.keyboard.type(user);
      await page.keyboard.press("Tab");
      await page.keyboard.type(password);
      await page.keyboard.press("Enter");
      await page.waitForSelector("#top:not([hidden])");
      check(await page.locator('header a[href="#/users"]').isHidden(), "no admin links for a reader");
      await arrived(page, "");
      check((await page.textContent("main")).includes("ui-pypi-hosted"), "a reader's dashboard lists what they may read");
      check(!(await page.textContent("main")).includes("Blob stores"), "no blob store count for a reader");
      await noPlaceholders(page, "a reader's dashboard");
      await view(page, "repositories/ui-pypi-hosted");
      check((await page.textContent("main h1")) === "ui-pypi-hosted", "a reader opens a repository they may read");
      check(await page.locator("#health-check").count() === 0, "a reader sees no health check");
      await view(page, "repositories/ui-pypi-hosted/usage");
      check((await page.textContent("main")).includes("pip.conf"), "and its usage page");
      await view(page, "browse/ui-npm-hosted");
      check((await page.textContent("main")).includes("ui-console-npm"), "and browses it");
      await shot(page, "reader-browse");
      await a11y(page, "reader browse");
      // They search what they may read (what they may not is tests/search.rs's).
      await view(page, "search");
      await page.fill("#f-q", "ui-console-npm");
      await page.getByRole("button", { name: "Search", exact: true }).click();
      await page.waitForFunction(() => { const t = document.querySelector("main table"); return t && t.textContent.includes("ui-npm-hosted"); });
      await a11y(page, "reader search");
      // The detail pages too, without the admins' buttons, in both languages.
      await componentPages(page, false, "-reader", false);
      await page.selectOption("#lang", "zh-CN");
      const readerComponentEnglish = await componentPages(page, false, "-reader-zh", false);
      await page.selectOption("#lang", "en");
      check(readerComponentEnglish.length === 0, "English left in a reader's zh-CN component pages:\n" + readerComponentEnglish.join("\n"));
      // The reader's pages in Chinese too.
      await page.selectOption("#lang", "zh-CN");
      const readerEnglish = [];
      for (const p of ["", "repositories/ui-pypi-hosted", "browse/ui-npm-hosted", "account", "tokens", "search"]) {
        await view(page, p);
        const left = await untranslated(page);
        if (left.length) readerEnglish.push(`${p || "dashboard"}: ${left.join(" ")}`);
        await shot(page, "reader-zh-" + (p.replace(/\//g, "-") || "dashboard"));
      }
      await page.selectOption("#lang", "en");
      check(readerEnglish.length === 0, "English left in a reader's zh-CN pages:\n" + readerEnglish.join("\n"));
      // My account: who they are and their roles; their own password, with the current one.
      await view(page, "account");
      const account = await page.textContent("main");
      check(account.includes(user) && account.includes("console-readers"), `the account page names the user and roles: ${account}`);
      await page.fill("#f-currentPassword", "not-the-password");
      await page.fill("#f-newPassword", "console-reader-pw-2");
      await page.fill("#f-again", "console-reader-pw-2");
      await page.getByRole("button", { name: "Change password" }).click();
      await page.waitForFunction(() => document.querySelector("main").textContent.includes("current password is wrong"));
      await page.fill("#f-currentPassword", password);
      await page.getByRole("button", { name: "Change password" }).click();
      await page.waitForSelector("#f-username");
      check((await page.textContent("main")).includes("sign in with the new one"), "after the change: sign in again");
      await login(page, user, "console-reader-pw-2");
      await arrived(page, "");
      // Navigation by keyboard: focus the Browse link and follow it with Enter.
      await page.focus('header nav a[href="#/browse"]');
      await page.keyboard.press("Enter");
      await arrived(page, "browse");
      await view(page, "users");
      check((await page.textContent("main h1")).includes("may not"), "admin pages are refused");
      const status = await page.evaluate(async () => (await fetch("/service/rest/v1/security/users", { headers: { "X-Requested-With": "XMLHttpRequest" } })).status);
      check(status === 403, `the API refuses a reader's session (${status})`);
      await shot(page, "reader");
    }
    check(external.length === 0, "no external requests: " + external.join(", "));
    check(a11yProblems.length === 0, "accessibility (axe-core, serious or critical):\n" + a11yProblems.join("\n"));
  } finally {
    await browser.close();
  }
}

main().then(() => process.exit(0), (e) => { console.error(e.stack || String(e)); process.exit(1); });
