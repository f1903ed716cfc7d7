// The publish page: camera and microphone to a WHIP endpoint.
//
// Query parameters: token (Bearer token, also editable in the form),
// server (base URL of another node), autostart=1 (start at once).
// window.cascadePublisher = {state, pc, liveAt} is for tests and debugging.

import { HTTPError, endSession, endpointURL, negotiate, pageParams, preferCodecs, showState } from './whip.js';

const { stream, params } = pageParams();
const whipURL = endpointURL('whip', stream, params);
const publisher = { state: 'idle', pc: null, liveAt: null };
window.cascadePublisher = publisher;

const el = (id) => document.getElementById(id);
const tokenInput = el('token');
const startButton = el('start');
const stopButton = el('stop');
const preview = el('preview');

let session = null; // {pc, media, url, token} of the running session

function setState(state, detail) {
  publisher.state = state;
  showState(state, detail);
}

async function start() {
  if (session) return;
  const token = tokenInput.value.trim();
  startButton.disabled = true;
  stopButton.disabled = false;
  setState('connecting');
  const s = { pc: null, media: null, url: null, token };
  session = s;
  try {
    s.media = await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
    });
    if (session !== s) return stopMedia(s); // stopped while asking for the camera
    preview.srcObject = s.media;

    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    s.pc = pc;
    publisher.pc = pc;
    for (const track of s.media.getTracks()) {
      const tr = pc.addTransceiver(track, { direction: 'sendonly', streams: [s.media] });
      if (track.kind === 'video') preferCodecs(tr, 'video', ['video/VP8', 'video/H264']);
      if (track.kind === 'audio') preferCodecs(tr, 'audio', ['audio/opus']);
    }
    pc.addEventListener('connectionstatechange', () => onConnectionState(s));

    s.url = await negotiate(pc, whipURL, token);
    if (session !== s) return endSession(s.url, token);
    onConnectionState(s);
  } catch (err) {
    if (session !== s) return;
    stop();
    const detail = err instanceof HTTPError && err.status
      ? `${err.status} ${err.message}` : err.message;
    setState('error', detail);
  }
}

function onConnectionState(s) {
  if (session !== s || !s.url) return;
  switch (s.pc.connectionState) {
    case 'connected':
      publisher.liveAt = Date.now();
      setState('live');
      break;
    case 'disconnected':
      setState('connecting', 'connection interrupted');
      break;
    case 'failed':
      stop();
      setState('error', 'connection failed');
      break;
    default:
      break;
  }
}

function stopMedia(s) {
  if (s.media) s.media.getTracks().forEach((t) => t.stop());
}

// stop ends the session: DELETE at the server, then local teardown.
function stop() {
  const s = session;
  session = null;
  startButton.disabled = false;
  stopButton.disabled = true;
  if (!s) return;
  endSession(s.url, s.token);
  if (s.pc) s.pc.close();
  stopMedia(s);
  preview.srcObject = null;
  publisher.liveAt = null;
  setState('idle');
}

tokenInput.value = params.get('token') || '';
const playLink = el('play-link');
playLink.href = endpointURL('play', stream, params).href;
playLink.textContent = playLink.href;

el('controls').addEventListener('submit', (ev) => {
  ev.preventDefault();
  start();
});
stopButton.addEventListener('click', stop);
window.addEventListener('pagehide', stop);

if (params.get('autostart') === '1') start();
