// WHIP (RFC 9725) and WHEP client helpers shared by the publish and play
// pages. Non-trickle: the offer goes out once ICE gathering is complete (or
// after a short wait), so one POST carries every candidate.

// HTTPError is a WHIP/WHEP request the server refused. status is the HTTP
// status (0 for a network failure); message is the server's reason text.
export class HTTPError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'HTTPError';
    this.status = status;
  }
}

// endpointURL builds the URL /kind/stream ('whip', 'whep' or 'play') on
// this origin, or on the base URL given as ?server=.
export function endpointURL(kind, stream, params) {
  const base = params.get('server') || window.location.origin;
  return new URL(`/${kind}/${encodeURIComponent(stream)}`, base);
}

// pageParams returns the page's query parameters and its stream name, which
// the server put in <body data-stream> (HTML-escaped, never in a script).
export function pageParams() {
  return {
    stream: document.body.dataset.stream || '',
    params: new URLSearchParams(window.location.search),
  };
}

// waitForGathering resolves when ICE gathering completes or after timeoutMs,
// whichever comes first (RFC 9725 section 4.1 allows either).
export function waitForGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', onChange);
      resolve();
    };
    const onChange = () => {
      if (pc.iceGatheringState === 'complete') done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', onChange);
  });
}

function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// negotiate creates the offer on pc, waits for ICE gathering, POSTs it to
// url and applies the answer (RFC 9725 section 4.2). It returns the session
// URL from Location, resolved against the final response URL so that a
// relative Location works after redirects. onPost is called just before the
// POST goes out. It throws HTTPError when the server refuses the offer.
export async function negotiate(pc, url, token, onPost) {
  await pc.setLocalDescription(await pc.createOffer());
  await waitForGathering(pc, 1000);
  if (onPost) onPost();
  let resp;
  try {
    resp = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', ...authHeaders(token) },
      body: pc.localDescription.sdp,
    });
  } catch (err) {
    throw new HTTPError(0, `cannot reach ${url.origin}: ${err.message}`);
  }
  const body = await resp.text();
  if (resp.status !== 201) {
    throw new HTTPError(resp.status, body.trim() || `${resp.status} ${resp.statusText}`);
  }
  const location = resp.headers.get('Location');
  if (!location) {
    throw new HTTPError(resp.status, 'server sent no Location header');
  }
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  return new URL(location, resp.url).href;
}

// endSession DELETEs a WHIP/WHEP session (RFC 9725 section 4.3). keepalive
// lets the request outlive the page when called from pagehide. Errors are
// ignored: the server also ends sessions whose peer goes away.
export function endSession(sessionURL, token) {
  if (!sessionURL) return Promise.resolve();
  return fetch(sessionURL, {
    method: 'DELETE',
    headers: authHeaders(token),
    keepalive: true,
  }).catch(() => {});
}

// preferCodecs reorders the codecs offered by transceiver so that the MIME
// types in order (e.g. ['video/VP8', 'video/H264']) come first; the rest keep
// their order. Browsers without setCodecPreferences keep their default.
export function preferCodecs(transceiver, kind, order) {
  if (typeof transceiver.setCodecPreferences !== 'function') return;
  const caps = (window.RTCRtpReceiver && RTCRtpReceiver.getCapabilities)
    ? RTCRtpReceiver.getCapabilities(kind) : null;
  if (!caps) return;
  const rank = (c) => {
    const i = order.indexOf(c.mimeType);
    return i < 0 ? order.length : i;
  };
  const codecs = caps.codecs.slice().sort((a, b) => rank(a) - rank(b));
  try {
    transceiver.setCodecPreferences(codecs);
  } catch (err) {
    console.warn('setCodecPreferences:', err.message);
  }
}

// showState shows the state of a page in the element #state, with an
// optional detail, and marks it with data-state for the stylesheet.
export function showState(state, detail) {
  const el = document.getElementById('state');
  if (!el) return;
  el.dataset.state = state;
  el.textContent = detail ? `${state}: ${detail}` : state;
}
