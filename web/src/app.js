// The page: loads OpenCV.js, the Haar cascade and the ONNX model (all from this folder), then
// analyses uploaded photos and webcam frames with pipeline.js. Nothing is sent anywhere.
// window.ferDemo exposes the last result and a benchmark for tests/test_web.py.

import * as ort from "./vendor/ort.wasm.min.mjs";
import * as P from "./pipeline.js";

const $ = (id) => document.getElementById(id);
const here = (path) => new URL(path, import.meta.url).href;

// Single-threaded WebAssembly: no SharedArrayBuffer, so no cross-origin-isolation headers are
// needed and any static host works. The .wasm / .mjs files are served from vendor/.
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = here("./vendor/");

const state = {
  cv: null,
  cascade: null,
  session: null,
  info: null,
  image: null, // the last photo: {pixels: ImageData, bitmap, name}
  webcam: null, // {stream, running}
  result: null,
  frames: 0, // webcam frames analysed
};

function setState(name) {
  document.body.dataset.state = name;
}

function say(text, kind = "info") {
  const message = $("message");
  message.textContent = text;
  message.dataset.kind = kind;
}

const percent = (p, digits = 1) => `${(100 * p).toFixed(digits)} %`;

// --- loading -------------------------------------------------------------------------------
// Resolves to {cv}, not to cv itself: OpenCV.js's Emscripten module has a then() method, so
// resolving a promise with it would call that then() forever.
function loadOpenCv(url) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = url;
    script.async = true;
    script.onerror = () => reject(new Error(`could not load ${url}`));
    script.onload = async () => {
      try {
        let cv = window.cv;
        if (cv instanceof Promise) cv = await cv;
        if (!cv.Mat) await new Promise((done) => (cv.onRuntimeInitialized = done));
        resolve({ cv });
      } catch (error) {
        reject(error);
      }
    };
    document.head.appendChild(script);
  });
}

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}

function describeModel(info) {
  const test = info.metrics.PrivateTest;
  const valid = info.metrics.PublicTest;
  $("model-summary").textContent =
    `Model “${info.architecture}” (run ${info.run_name}): ${percent(test.accuracy)} accuracy ` +
    `on FER2013's PrivateTest split (${test.n.toLocaleString("en")} held-out faces; ` +
    `${percent(valid.accuracy)} on PublicTest, the split that chose it), trained on ` +
    `${info.trained_on}.`;
  const facts = [
    ["Run", info.run_name],
    ["Trained on", info.trained_on],
    ["Training command", info.command],
    ["PrivateTest (test)", metricText(test)],
    ["PublicTest (validation)", metricText(valid)],
    ["Classes", info.emotions.join(", ")],
    ["In the browser", `${info.onnx.file}, ${(info.onnx.bytes / 1e6).toFixed(1)} MB, exported by ` +
      `python -m fer_utils export (largest difference from Keras ${info.onnx.max_difference})`],
    ["Record", `results/${info.run_name}.json, built ${info.built}`],
  ];
  const list = $("model-facts");
  list.replaceChildren();
  for (const [term, value] of facts) {
    if (value === undefined || value === null) continue;
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }
}

function metricText(m) {
  return `accuracy ${percent(m.accuracy)}, balanced accuracy ${percent(m.balanced_accuracy)}, ` +
    `macro-F1 ${m.macro_f1.toFixed(3)} (${m.n} faces)`;
}

async function init() {
  setState("loading");
  try {
    const infoPromise = fetchOk(here("./model-info.json")).then((r) => r.json());
    const cascadePromise = fetchOk(here("./haarcascade_frontalface_default.xml")).then((r) => r.text());
    const modelPromise = fetchOk(here("./model.onnx")).then((r) => r.arrayBuffer());
    const cvPromise = loadOpenCv(here("./vendor/opencv.js"));
    state.info = await infoPromise;
    describeModel(state.info);
    state.session = await ort.InferenceSession.create(await modelPromise, {
      executionProviders: ["wasm"],
      graphOptimizationLevel: "all",
    });
    // one run before the first photo: the first call of a session is several times slower
    await P.classify(ort, state.session, new Float32Array(P.IMAGE_SIZE * P.IMAGE_SIZE), 1);
    state.cv = (await cvPromise).cv;
    state.cascade = P.loadCascade(state.cv, await cascadePromise);
  } catch (error) {
    setState("error");
    say(`The demo could not start: ${error.message || error}. Serve this folder over HTTP ` +
      `(python web/build.py --serve), not from a file:// address.`, "error");
    throw error;
  }
  $("file").disabled = false;
  $("webcam").disabled = !navigator.mediaDevices?.getUserMedia;
  if ($("webcam").disabled) $("webcam").title = "This browser gives this page no webcam (it needs https or localhost).";
  say("Choose a photo or start the webcam.");
  setState("ready");
}

// --- analysis ------------------------------------------------------------------------------
/** Faces, crops and probabilities of one RGBA image, with the time each step took (ms). */
async function analyse(pixels, { whole = false, minFace = minFaceChosen() } = {}) {
  const cv = state.cv;
  const t0 = performance.now();
  const rgb = P.rgbMat(cv, pixels);
  try {
    const t1 = performance.now();
    const faces = whole ? P.wholeImage(rgb) : P.detectFaces(cv, state.cascade, rgb, { minFace });
    const t2 = performance.now();
    const crops = P.cropFaces(cv, rgb, faces);
    const t3 = performance.now();
    const probs = await P.classify(ort, state.session, crops.input, faces.length);
    const t4 = performance.now();
    const n = P.IMAGE_SIZE * P.IMAGE_SIZE;
    return {
      width: pixels.width,
      height: pixels.height,
      faces: faces.map((f, i) => {
        const p = Array.from(probs[i]);
        const best = p.indexOf(Math.max(...p));
        return { ...f, label: P.EMOTIONS[best], confidence: p[best], probs: p,
          crop: crops.pixels.slice(i * n, (i + 1) * n) };
      }),
      timings: { prepare: t1 - t0, detect: t2 - t1, crop: t3 - t2, classify: t4 - t3, total: t4 - t0 },
    };
  } finally {
    rgb.delete();
  }
}

function minFaceChosen() {
  return Number($("min-face").value) || P.MIN_FACE;
}

const work = document.createElement("canvas");
const workContext = work.getContext("2d", { willReadFrequently: true });

/** RGBA pixels of an ImageBitmap, video frame or canvas, as drawn at its own size. */
function pixelsOf(source, width, height) {
  work.width = width;
  work.height = height;
  workContext.clearRect(0, 0, width, height);
  workContext.drawImage(source, 0, 0);
  return workContext.getImageData(0, 0, width, height);
}

// --- drawing -------------------------------------------------------------------------------
function render(source, result) {
  const canvas = $("canvas");
  canvas.width = result.width;
  canvas.height = result.height;
  const g = canvas.getContext("2d");
  g.drawImage(source, 0, 0);
  const line = Math.max(2, Math.round(Math.max(result.width, result.height) / 300));
  const font = Math.max(12, Math.round(Math.max(result.width, result.height) / 45));
  g.font = `600 ${font}px system-ui, sans-serif`;
  g.textBaseline = "bottom";
  result.faces.forEach((f, i) => {
    g.lineWidth = line;
    g.strokeStyle = "#00dc00";
    g.strokeRect(f.x, f.y, f.w, f.h);
    const text = `${i + 1} ${f.label} ${percent(f.confidence, 0)}`;
    const width = g.measureText(text).width + 8;
    const top = Math.max(font + 4, f.y);
    g.fillStyle = "rgba(0, 0, 0, 0.65)";
    g.fillRect(f.x - line / 2, top - font - 4, width, font + 4);
    g.fillStyle = "#7dff7d";
    g.fillText(text, f.x + 4, top - 2);
  });
  renderFaces(result.faces);
}

function renderFaces(faces) {
  const list = $("faces");
  list.replaceChildren();
  faces.forEach((f, i) => {
    const item = document.createElement("li");
    item.className = "face";
    const crop = document.createElement("canvas");
    crop.width = crop.height = P.IMAGE_SIZE;
    crop.className = "crop";
    crop.title = "What the model sees: the 48×48 grey crop";
    const data = new ImageData(P.IMAGE_SIZE, P.IMAGE_SIZE);
    f.crop.forEach((v, k) => data.data.set([v, v, v, 255], 4 * k));
    crop.getContext("2d").putImageData(data, 0, 0);
    const title = document.createElement("h2");
    title.textContent = `Face ${i + 1}: ${f.label} (${percent(f.confidence, 0)})`;
    const box = document.createElement("p");
    box.className = "box";
    box.textContent = `box x ${f.x}, y ${f.y}, ${f.w}×${f.h} px`;
    const bars = document.createElement("table");
    bars.className = "bars";
    P.EMOTIONS.forEach((emotion, k) => {
      const row = bars.insertRow();
      row.dataset.emotion = emotion;
      if (k === P.EMOTIONS.indexOf(f.label)) row.className = "top";
      row.insertCell().textContent = emotion;
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = `${(100 * f.probs[k]).toFixed(2)}%`;
      row.insertCell().append(bar);
      row.insertCell().textContent = percent(f.probs[k]);
    });
    const text = document.createElement("div");
    text.append(title, box, bars);
    item.append(crop, text);
    list.append(item);
  });
}

function showTiming(result, what) {
  const t = result.timings;
  $("timing").textContent = `${t.total.toFixed(0)} ms ${what} (detection ${t.detect.toFixed(0)}, ` +
    `model ${t.classify.toFixed(0)}) · ${result.width}×${result.height}`;
}

function publish(result, status, message, source) {
  state.result = { ...result, status, message, source,
    faces: (result.faces || []).map(({ crop, ...f }) => f) };
  say(message, status);
}

// --- photos --------------------------------------------------------------------------------
async function analysePhoto() {
  const { pixels, bitmap, name } = state.image;
  const whole = $("whole").checked;
  const result = await analyse(pixels, { whole });
  render(bitmap, result);
  showTiming(result, "for this photo");
  const n = result.faces.length;
  if (n === 0) {
    publish(result, "no_face", `No face found in “${name}”. The detector looks for frontal, ` +
      `upright faces of at least ${minFaceChosen()} pixels: try a closer or more frontal photo, ` +
      `or tick “the image is one face” if the photo is already a cropped face.`, name);
  } else {
    publish(result, "ok", `${n} face${n > 1 ? "s" : ""} in “${name}”` +
      (whole ? " (the whole image taken as one face)." : "."), name);
  }
}

function fail(status, message, source) {
  $("canvas").getContext("2d").clearRect(0, 0, $("canvas").width, $("canvas").height);
  $("faces").replaceChildren();
  $("timing").textContent = "";
  publish({ faces: [] }, status, message, source);
  setState("done");
}

async function onFile(file) {
  stopWebcam();
  if (!file) return;
  setState("busy");
  say(`Reading “${file.name}”…`);
  state.image = null;
  if (file.size === 0) return fail("error", `“${file.name}” is empty (0 bytes): choose a photo.`, file.name);
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, {
      imageOrientation: "from-image", // EXIF rotation, as OpenCV's imdecode applies it
      premultiplyAlpha: "none",
      colorSpaceConversion: "none", // the stored pixel values, as OpenCV reads them
    });
  } catch {
    const type = file.type ? ` (${file.type})` : "";
    return fail("not_image", `“${file.name}”${type} is not an image this browser can read: ` +
      `choose a JPEG, PNG, WebP, GIF or BMP photo.`, file.name);
  }
  if (bitmap.width * bitmap.height > P.MAX_PIXELS) {
    return fail("error", `“${file.name}” is ${bitmap.width}×${bitmap.height} pixels, above the ` +
      `limit of ${P.MAX_PIXELS / 1e6} megapixels: resize it first.`, file.name);
  }
  state.image = { pixels: pixelsOf(bitmap, bitmap.width, bitmap.height), bitmap, name: file.name };
  try {
    await analysePhoto();
  } catch (error) {
    return fail("error", `Could not analyse “${file.name}”: ${error.message || error}`, file.name);
  }
  setState("done");
}

// --- webcam --------------------------------------------------------------------------------
function nextFrame(video) {
  return new Promise((resolve) =>
    video.requestVideoFrameCallback ? video.requestVideoFrameCallback(() => resolve())
      : requestAnimationFrame(() => resolve()));
}

async function startWebcam() {
  const video = $("video");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" },
      audio: false,
    });
  } catch (error) {
    const why = error.name === "NotAllowedError" ? "permission was refused" :
      error.name === "NotFoundError" ? "no camera was found" : error.message || error.name;
    say(`No webcam: ${why}.`, "error");
    return;
  }
  video.srcObject = stream;
  await video.play();
  state.webcam = { stream, running: true };
  $("webcam").textContent = "Stop webcam";
  setState("webcam");
  say("Webcam on: frames are analysed here, one after another, and never leave this page.");
  const times = [];
  while (state.webcam?.running) {
    await nextFrame(video);
    if (!state.webcam?.running || !video.videoWidth) continue;
    const pixels = pixelsOf(video, video.videoWidth, video.videoHeight);
    const result = await analyse(pixels);
    if (!state.webcam?.running) break;
    render(work, result);
    times.push(result.timings.total);
    if (times.length > 30) times.shift();
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    showTiming({ ...result, timings: { ...result.timings, total: mean } }, "per frame (mean of the last 30)");
    const n = result.faces.length;
    publish(result, n ? "ok" : "no_face", n ? `Webcam: ${n} face${n > 1 ? "s" : ""}.` :
      `Webcam: no face in view (frontal, upright faces of at least ${minFaceChosen()} pixels).`, "webcam");
    state.frames += 1;
  }
}

function stopWebcam() {
  if (!state.webcam) return;
  state.webcam.running = false;
  for (const track of state.webcam.stream.getTracks()) track.stop();
  $("video").srcObject = null;
  state.webcam = null;
  $("webcam").textContent = "Start webcam";
  setState("ready");
  say("Webcam off.");
}

// --- benchmark (used by tests/test_web.py; also callable from the console) -----------------
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Times the whole path (pixels → faces → crops → probabilities) on the last photo, and the
 * model alone on one face; medians in milliseconds over ``repeats`` runs after ``warmup``. */
async function benchmark({ repeats = 20, warmup = 3, minFace = P.MIN_FACE } = {}) {
  if (!state.image) throw new Error("load a photo first");
  const { pixels } = state.image;
  const frame = { total: [], detect: [], crop: [], classify: [] };
  let faces = 0;
  for (let i = 0; i < warmup + repeats; i++) {
    const r = await analyse(pixels, { minFace });
    faces = r.faces.length;
    if (i < warmup) continue;
    for (const k of Object.keys(frame)) frame[k].push(r.timings[k]);
  }
  const one = new Float32Array(P.IMAGE_SIZE * P.IMAGE_SIZE).fill(128);
  const model = [];
  for (let i = 0; i < warmup + repeats; i++) {
    const t = performance.now();
    await P.classify(ort, state.session, one, 1);
    if (i >= warmup) model.push(performance.now() - t);
  }
  return {
    width: pixels.width, height: pixels.height, faces, repeats, min_face: minFace,
    frame_ms: median(frame.total), detect_ms: median(frame.detect), crop_ms: median(frame.crop),
    classify_ms: median(frame.classify), model_one_face_ms: median(model),
  };
}

// --- wiring --------------------------------------------------------------------------------
$("file").addEventListener("change", async (event) => {
  const file = event.target.files?.[0];
  event.target.value = ""; // choosing the same file again is a new change
  await onFile(file);
});
$("webcam").addEventListener("click", () => (state.webcam ? stopWebcam() : startWebcam()));
async function again() {
  if (!state.image || state.webcam) return;
  setState("busy");
  try {
    await analysePhoto();
  } catch (error) {
    return fail("error", `Could not analyse “${state.image.name}”: ${error.message || error}`,
      state.image.name);
  }
  setState("done");
}
$("whole").addEventListener("change", again);
$("min-face").addEventListener("change", again);

window.ferDemo = {
  ready: init(),
  get result() { return state.result; },
  get frames() { return state.frames; },
  benchmark,
  stopWebcam,
};
