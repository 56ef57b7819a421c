// The browser twin of fer_utils/inference/faces.py (haar_detector, crop_faces) and of the
// classifier call in predict.py: the same OpenCV functions, in the same order, with the same
// arguments, so that the 48×48 crops (and so the probabilities) are those of
// `python -m fer_utils predict`. Keep the two in step: tests/test_web.py compares them.
//
// Images come in as RGBA pixels (canvas ImageData); OpenCV in Python works on BGR. Every step
// below treats the three colour channels alike or converts with the matching code (RGB2GRAY
// here for BGR2GRAY there), so the channel order changes nothing. Alpha is dropped, as
// predict's to_bgr8 drops it (COLOR_BGRA2BGR): transparent pixels keep their colour.

export const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
export const IMAGE_SIZE = 48; // fer_utils.config.IMAGE_SIZE
export const DETECT_MAX_SIDE = 1280; // faces.py: detection runs on a copy no larger than this
export const HAAR_WINDOW = 24; // faces.py: the cascade's detection window, pixels
export const HAAR_STEP = 1.2; // faces.py: ratio between successive face sizes searched
export const MIN_FACE = 30; // predict's --min-face default
// faces.py CROP_GEOMETRY (measured on FER2013 by `python benchmarks/bench_framing.py --fit`):
// how a crop frames a detector's box, so that it frames the face as FER2013's 48×48 images do.
// The page detects with Haar only; "none" is the whole image as one face. Keep in step with
// faces.py (tests/test_framing.py compares them).
export const CROP_GEOMETRY = {
  haar: { scale: 1.029, dx: 0.0, dy: 0.0 },
  none: { scale: 1.0, dx: 0.0, dy: 0.0 },
};
export const MAX_PIXELS = 100_000_000; // media.py: larger images are refused

/** Python's round(): to the nearest integer, halves to the even one (JS rounds them up). */
export function pyRound(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Run ``fn`` with a list that collects OpenCV objects, deleting them all afterwards
 * (OpenCV.js memory lives in the wasm heap and is not garbage-collected). */
function withMats(fn) {
  const owned = [];
  const keep = (m) => (owned.push(m), m);
  try {
    return fn(keep);
  } finally {
    for (const m of owned) m.delete();
  }
}

/** An RGB cv.Mat of the RGBA ``ImageData``-like {data, width, height} (the caller deletes it). */
export function rgbMat(cv, image) {
  const rgba = cv.matFromImageData(image);
  try {
    const rgb = new cv.Mat();
    cv.cvtColor(rgba, rgb, cv.COLOR_RGBA2RGB);
    return rgb;
  } finally {
    rgba.delete();
  }
}

/** A Haar cascade loaded from the XML text of ``haarcascade_frontalface_default.xml``. */
export function loadCascade(cv, xmlText, name = "haarcascade_frontalface_default.xml") {
  const bytes = new TextEncoder().encode(xmlText);
  try {
    cv.FS_unlink("/" + name);
  } catch {
    // not there yet
  }
  cv.FS_createDataFile("/", name, bytes, true, false, false);
  const cascade = new cv.CascadeClassifier();
  if (!cascade.load(name) || cascade.empty()) throw new Error(`could not load the cascade ${name}`);
  return cascade;
}

/** faces.py haar_detector: faces in ``rgb`` (cv.Mat, 3 channels) as {x, y, w, h, score} in its
 * pixels, sorted left to right as predict sorts them. */
export function detectFaces(cv, cascade, rgb, { minFace = MIN_FACE, step = HAAR_STEP } = {}) {
  return withMats((keep) => {
    const width = rgb.cols;
    const height = rgb.rows;
    const scale = Math.min(1.0, HAAR_WINDOW / minFace, DETECT_MAX_SIDE / Math.max(height, width));
    let small = rgb;
    if (scale !== 1.0) {
      const size = new cv.Size(Math.max(1, pyRound(width * scale)), Math.max(1, pyRound(height * scale)));
      small = keep(new cv.Mat());
      cv.resize(rgb, small, size, 0, 0, cv.INTER_AREA);
    }
    const smallest = Math.max(HAAR_WINDOW, pyRound(minFace * scale));
    if (Math.min(small.rows, small.cols) < smallest) return []; // too small or thin for a face
    const grey = keep(new cv.Mat());
    cv.cvtColor(small, grey, cv.COLOR_RGB2GRAY);
    const equalized = keep(new cv.Mat());
    cv.equalizeHist(grey, equalized);
    const boxes = keep(new cv.RectVector());
    const levels = keep(new cv.IntVector());
    const weights = keep(new cv.DoubleVector());
    const minSize = new cv.Size(smallest, smallest);
    cascade.detectMultiScale3(equalized, boxes, levels, weights, step, 5, 0, minSize, new cv.Size(0, 0), true);
    const faces = [];
    for (let i = 0; i < boxes.size(); i++) {
      const b = boxes.get(i);
      let box = [b.x, b.y, b.width, b.height];
      if (scale !== 1.0) box = box.map((v) => pyRound(v / scale));
      faces.push({ x: box[0], y: box[1], w: box[2], h: box[3], score: weights.get(i), detector: "haar" });
    }
    return faces.sort((a, b) => a.x - b.x || a.y - b.y);
  });
}

/** The whole image as one face (predict --detector none: the image is already a crop). */
export function wholeImage(rgb) {
  return [{ x: 0, y: 0, w: rgb.cols, h: rgb.rows, score: 1.0, detector: "none" }];
}

/** faces.py Geometry.square: [x0, y0, side] of the crop of ``face`` framed by ``geometry``, in
 * whole pixels (it may reach outside the image). The same arithmetic, in the same order. */
export function cropSquare(face, geometry) {
  const side = Math.max(1, pyRound(geometry.scale * Math.max(face.w, face.h)));
  const cx = face.x + face.w / 2 + geometry.dx * face.w;
  const cy = face.y + face.h / 2 + geometry.dy * face.h;
  return [Math.floor(cx - side / 2 + 0.5), Math.floor(cy - side / 2 + 0.5), side];
}

/** faces.py crop_square: the side×side pixels of the 1-channel ``grey`` from (x0, y0), edge
 * pixels replicated where the square leaves the image; a cv.Mat (the caller deletes it). */
function cropPixels(cv, grey, x0, y0, side) {
  const { rows, cols } = grey;
  const src = grey.data;
  const out = new Uint8Array(side * side);
  const at = Int32Array.from({ length: side }, (_, c) => Math.min(cols - 1, Math.max(0, x0 + c)));
  for (let r = 0; r < side; r++) {
    const row = Math.min(rows - 1, Math.max(0, y0 + r)) * cols;
    for (let c = 0; c < side; c++) out[r * side + c] = src[row + at[c]];
  }
  return cv.matFromArray(side, side, cv.CV_8UC1, out);
}

/** faces.py crop_faces: square grey crops of ``faces``, each framed by ``geometry`` if given,
 * else by its detector's CROP_GEOMETRY, on whole pixels (edges replicated outside the image),
 * resized to 48×48 with INTER_AREA. Returns {pixels: Uint8Array(N·48·48), input: Float32Array
 * of the same, 0–255}. */
export function cropFaces(cv, rgb, faces, geometry = null) {
  return withMats((keep) => {
    const n = IMAGE_SIZE * IMAGE_SIZE;
    const pixels = new Uint8Array(faces.length * n);
    const grey = keep(new cv.Mat());
    cv.cvtColor(rgb, grey, cv.COLOR_RGB2GRAY);
    faces.forEach((f, i) => {
      const [x0, y0, side] = cropSquare(f, geometry ?? CROP_GEOMETRY[f.detector ?? "none"]);
      const patch = keep(cropPixels(cv, grey, x0, y0, side));
      const crop = keep(new cv.Mat());
      cv.resize(patch, crop, new cv.Size(IMAGE_SIZE, IMAGE_SIZE), 0, 0, cv.INTER_AREA);
      pixels.set(crop.data, i * n);
    });
    return { pixels, input: Float32Array.from(pixels) };
  });
}

/** The model on ``count`` crops: (count, 7) probabilities as an array of Float32Arrays. */
export async function classify(ort, session, input, count) {
  if (count === 0) return [];
  const tensor = new ort.Tensor("float32", input, [count, IMAGE_SIZE, IMAGE_SIZE, 1]);
  const output = await session.run({ [session.inputNames[0]]: tensor });
  const result = output[session.outputNames[0]];
  const k = EMOTIONS.length;
  const probs = Array.from({ length: count }, (_, i) => result.data.slice(i * k, (i + 1) * k));
  tensor.dispose?.();
  result.dispose?.();
  return probs;
}
