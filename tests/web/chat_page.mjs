// Drives the chat page of a running `dsv3 serve` with Debian's chromium: types a message, waits
// for the streamed answer, checks the conversation history and the stop button, and saves a
// screenshot.   node tests/web/chat_page.mjs URL SCREENSHOT.png
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(join(process.env.DSV3_NODE_DIR || ".cache/node", "package.json"));
const { chromium } = require("playwright-core");
const [url, shot] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "dsv3-chromium-"));

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
  console.log("ok:", what);
}

// A fresh --user-data-dir: playwright takes it as the persistent context's folder.
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1100, height: 720 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = context.pages()[0] || await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, { waitUntil: "load" });
  check((await page.title()) === "dsv3 chat", "page title");
  await page.waitForFunction(() => document.getElementById("model").textContent.includes("context"));
  check(true, "model info from /v1/models");

  // Deterministic settings, then a message.
  await page.fill("#temperature", "0");
  await page.fill("#max_tokens", "24");
  // Streaming: record every length the answer bubble has while its request is still running.
  await page.evaluate(() => {
    window.__lens = [];
    new MutationObserver(() => {
      const b = document.querySelector(".msg.assistant.streaming");
      if (b && b.textContent.length && window.__lens.at(-1) !== b.textContent.length) window.__lens.push(b.textContent.length);
    }).observe(document.getElementById("messages"), { childList: true, subtree: true, characterData: true });
  });
  await page.fill("#input", "Hello! Who are you?");
  await page.press("#input", "Enter");
  await page.waitForSelector(".msg.assistant:not(.streaming) .meta", { timeout: 120000 });
  const answer = await page.$eval(".msg.assistant", (e) => e.firstChild.textContent);
  const meta = await page.$eval(".msg.assistant .meta", (e) => e.textContent);
  check(answer.length > 0, `streamed answer (${JSON.stringify(answer.slice(0, 40))}...)`);
  check(meta.includes("finish: length") && meta.includes("24 tokens"), `usage line: ${meta}`);
  if (process.env.EXPECT_TEXT) check(answer === process.env.EXPECT_TEXT, "answer equals transformers' greedy text");
  check((await page.$$("#history li")).length === 1, "conversation listed in history");

  // A new conversation with a long system prompt, two turns: the second sends the history and
  // its prompt starts with the first one's 64-token blocks, so the prefix cache reports hits.
  await page.fill("#system", "You are a helpful assistant. ".repeat(20));
  await page.click("#new");
  await page.fill("#input", "First question?");
  await page.press("#input", "Enter");
  await page.waitForSelector(".msg.assistant:not(.streaming) .meta", { timeout: 120000 });
  await page.fill("#input", "And then?");
  await page.press("#input", "Enter");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .meta").length === 2, null, { timeout: 120000 });
  const meta2 = await page.$$eval(".msg.assistant .meta", (es) => es[1].textContent);
  const cached = meta2.match(/\((\d+) cached\)/);
  check(cached && Number(cached[1]) >= 64, `second turn hit the prefix cache: ${meta2}`);
  check((await page.$$(".msg.user")).length === 2, "two user messages shown");
  check((await page.$$("#history li")).length === 2, "two conversations in history");

  // Stop button: a long answer, seen growing while it streams, is cut off. (Checked here, not on
  // the 24-token answer above: that one can arrive in one burst on a fast machine, and 1,500
  // tokens could finish before a click on a busy one; this fixture decodes ~2,000 tok/s.)
  await page.fill("#max_tokens", "12000");
  await page.evaluate(() => { window.__lens = []; });
  await page.fill("#input", "Tell me a long story.");
  await page.press("#input", "Enter");
  // Polled by timer, so the wait does not hang on the page's frames (it did while the page drew
  // every token).
  await page.waitForFunction(() => window.__lens.length >= 3, null, { timeout: 120000, polling: 100 });
  check(true, "answer grew while streaming");
  await page.click("#stopbtn");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .meta").length === 3, null, { timeout: 30000 });
  const meta3 = await page.$$eval(".msg.assistant .meta", (es) => es[2].textContent);
  check(meta3.includes("finish: stopped"), `stop button: ${meta3}`);
  check(!(await page.$eval("#send", (b) => b.disabled)), "send enabled again");

  // A reload keeps the conversation (localStorage).
  await page.reload({ waitUntil: "load" });
  await page.click("#history li");  // the newest conversation is listed first
  check((await page.$$(".msg.user")).length === 3, "history survives a reload");
  await page.screenshot({ path: shot, fullPage: false });
  check(errors.length === 0, "no page errors " + errors.join("; "));
} catch (e) {
  for (const p of context.pages()) await p.screenshot({ path: shot.replace(/\.png$/, "") + ".failed.png" }).catch(() => {});
  throw e;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
