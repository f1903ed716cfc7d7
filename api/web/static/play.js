// The play page: a WHEP player that reconnects with backoff.
//
// Query parameters: token (Bearer token), viewer (viewer id, passed on to
// the WHEP endpoint), server (base URL of another node).
//
// window.cascadePlayer is for tests and debugging. Times are
// performance.now() values of this page; they describe the latest session:
//   state          'connecting' | 'waiting for stream' | 'live' | 'reconnecting' | 'error'
//   postStartedAt  when the WHEP POST of the latest session went out
//   firstFrameAt   when that session's first video frame was decoded
//   joinMs         firstFrameAt - postStartedAt
//   firstFrameVia  'rvfc' (requestVideoFrameCallback) or 'stats' (getStats poll)
//   reconnects     sessions started after the first one
//   waitedForStream true once a POST was answered 404 (stream not live yet)
//   pc             the RTCPeerConnection of the latest session

import { HTTPError, endSession, endpointURL, negotiate, pageParams, showState } from './whip.js';

const { stream, params } = pageParams();
const token = params.get('token') || '';
const whepURL = endpointURL('whep', stream, params);
if (params.get('viewer')) whepURL.searchParams.set('viewer', params.get('viewer'));

const player = {
  state: 'connecting',
  pc: null,
  postStartedAt: null,
  firstFrameAt: null,
  joinMs: null,
  firstFrameVia: null,
  reconnects: 0,
  waitedForStream: false,
};
window.cascadePlayer = player;

const video = document.getElementById('video');
const unmute = document.getElementById('unmute');

const minBackoffMs = 1000;
const maxBackoffMs = 10000;
const disconnectedGraceMs = 5000; // a 'disconnected' session may still recover
const statsPollMs = 20;

let backoffMs = minBackoffMs;
let session = null; // {pc, url, timers} of the current attempt
let retryTimer = null;

function setState(state, detail) {
  player.state = state;
  showState(state, detail);
}

async function connect() {
  retryTimer = null;
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  const s = { pc, url: null, disconnectTimer: null, statsTimer: null };
  session = s;
  Object.assign(player, { pc, postStartedAt: null, firstFrameAt: null, joinMs: null, firstFrameVia: null });

  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  // The video gets its stream only with the first track: a media element
  // waiting for data delays the page's load event (and an embedding
  // iframe's onload) for as long as the stream is not live.
  const media = new MediaStream();
  pc.addEventListener('track', (ev) => {
    media.addTrack(ev.track);
    if (video.srcObject !== media) {
      video.srcObject = media;
      video.play().catch(() => {}); // autoplay of a muted video is allowed
    }
    if (ev.track.kind === 'video') watchFirstFrame(s);
    // The server closing the session shows first on the DTLS transport.
    const dtls = ev.receiver.transport;
    if (dtls) {
      dtls.addEventListener('statechange', () => {
        if (dtls.state === 'closed' || dtls.state === 'failed') fail(s, `transport ${dtls.state}`);
      });
    }
  });
  pc.addEventListener('connectionstatechange', () => onConnectionState(s));

  let url;
  try {
    url = await negotiate(pc, whepURL, token, () => {
      player.postStartedAt = performance.now();
    });
  } catch (err) {
    if (session !== s) return;
    if (err instanceof HTTPError && err.status === 404) {
      player.waitedForStream = true;
      retry(s, 'waiting for stream', err.message);
    } else {
      const detail = err instanceof HTTPError && err.status ? `${err.status} ${err.message}` : err.message;
      retry(s, 'error', detail);
    }
    return;
  }
  if (session !== s) {
    endSession(url, token); // torn down while the POST was in flight
    return;
  }
  s.url = url;
  if (player.state !== 'live') setState('connecting', 'negotiated');
}

function onConnectionState(s) {
  if (session !== s) return;
  clearTimeout(s.disconnectTimer);
  switch (s.pc.connectionState) {
    case 'connected':
      if (player.firstFrameAt === null) setState('connecting', 'waiting for video');
      break;
    case 'disconnected':
      setState('reconnecting', 'connection interrupted');
      s.disconnectTimer = setTimeout(() => fail(s, 'connection lost'), disconnectedGraceMs);
      break;
    case 'failed':
    case 'closed':
      fail(s, `connection ${s.pc.connectionState}`);
      break;
    default:
      break;
  }
}

// watchFirstFrame records the first decoded video frame of session s.
// requestVideoFrameCallback is exact but fires only while the video is
// rendered (not in a hidden tab), so the getStats poll runs beside it and
// whichever sees the frame first wins.
function watchFirstFrame(s) {
  if (s.statsTimer !== null) return;
  const mark = (via) => {
    if (session !== s || player.firstFrameAt !== null) return;
    clearInterval(s.statsTimer);
    player.firstFrameAt = performance.now();
    player.firstFrameVia = via;
    if (player.postStartedAt !== null) {
      player.joinMs = Math.round(player.firstFrameAt - player.postStartedAt);
    }
    backoffMs = minBackoffMs;
    setState('live');
  };
  if (typeof video.requestVideoFrameCallback === 'function') {
    video.requestVideoFrameCallback(() => mark('rvfc'));
  }
  s.statsTimer = setInterval(async () => {
    if (session !== s) return clearInterval(s.statsTimer);
    try {
      const stats = await s.pc.getStats();
      stats.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video' && r.framesDecoded > 0) mark('stats');
      });
    } catch (err) {
      // The session closed under the poll; the next tick stops it.
    }
  }, statsPollMs);
}

// fail ends session s and schedules the next attempt.
function fail(s, reason) {
  if (session !== s) return;
  retry(s, 'reconnecting', reason);
}

// retry tears session s down, shows state, and connects again after the
// current backoff (1 s, 2 s, 4 s, ... at most 10 s).
function retry(s, state, detail) {
  teardown(s);
  session = null;
  const delay = backoffMs;
  backoffMs = Math.min(backoffMs * 2, maxBackoffMs);
  setState(state, `${detail}; retrying in ${delay / 1000} s`);
  retryTimer = setTimeout(() => {
    player.reconnects++;
    connect();
  }, delay);
}

function teardown(s) {
  clearTimeout(s.disconnectTimer);
  clearInterval(s.statsTimer);
  s.statsTimer = -1; // no new poll for this session
  endSession(s.url, token);
  s.url = null;
  s.pc.close();
}

unmute.addEventListener('click', () => {
  video.muted = false;
  video.play().catch(() => {});
  unmute.hidden = true;
});

window.addEventListener('pagehide', () => {
  clearTimeout(retryTimer);
  if (session) teardown(session);
  session = null;
});

// Connect once the page has loaded, so that nothing the player does holds
// up the load event.
if (document.readyState === 'complete') connect();
else window.addEventListener('load', connect, { once: true });
