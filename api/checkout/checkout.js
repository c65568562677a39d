// Passage's reference checkout: the public checkout API from a browser, no framework, no build.
//
// 1. Offers come from GET /checkout/offers (the page's catalogue; a real shop has its own search).
// 2. Stripe.js turns the card into a PaymentMethod (pm_...): the card never reaches Passage.
// 3. POST /bookings with an Idempotency-Key per checkout attempt (a retry never books twice).
// 4. GET /bookings/{id}/events, read with fetch() so the access token travels in the
//    Authorization header, never in a URL; Last-Event-ID resumes after a dropped connection.
// 5. The `booking` events drive the page: a price to accept or decline, 3-D Secure through
//    stripe.confirmCardPayment, the outcome, cancel with the refund and the fees kept.
'use strict';

const config = JSON.parse(document.getElementById('checkout-config').textContent);
const KINDS = ['flight', 'hotel', 'ferry', 'cruise', 'activity'];
const KIND_TITLES = {
  flight: 'Flights', hotel: 'Hotels', ferry: 'Ferries', cruise: 'Cruises', activity: 'Activities (optional)',
};
const TERMINAL = new Set(['CONFIRMED', 'FAILED', 'CANCELLED']);
const STATUS_TEXT = {
  RECEIVED: 'Received', PRICING: 'Checking prices', AWAITING_PRICE_ACCEPTANCE: 'Waiting for you: the price changed',
  HOLDING: 'Holding your places', AUTHORIZING: 'Authorizing the payment',
  AWAITING_PAYMENT_ACTION: 'Waiting for you: confirm the payment with your bank',
  CONFIRMING: 'Confirming with the suppliers', CAPTURING: 'Taking the payment', CONFIRMED: 'Confirmed',
  COMPENSATING: 'Undoing what was done', FAILED: 'Failed', CANCELLING: 'Cancelling', CANCELLED: 'Cancelled',
  NEEDS_ATTENTION: 'Our team is looking into it',
};
const $ = (id) => document.getElementById(id);

const stripe = Stripe(config.stripePublishableKey);
const card = stripe.elements().create('card');
card.mount('#card-element');

const offersById = new Map();
let booking = null;          // {id, token}
let lastEventId = 0;
let current = null;          // the latest `booking` event
let authenticated = new Set();  // client secrets already handed to Stripe.js
let attemptKey = null;       // Idempotency-Key of the checkout attempt in progress
let following = false;

// --- money ---------------------------------------------------------------------------------------

function money(value) {
  if (!value) return '—';
  const format = new Intl.NumberFormat(undefined, {style: 'currency', currency: value.currency});
  const digits = format.resolvedOptions().maximumFractionDigits;
  return format.format(value.amount / 10 ** digits);
}

// --- offers --------------------------------------------------------------------------------------

async function loadOffers() {
  const box = $('offers');
  try {
    for (const kind of KINDS) {
      const response = await fetch(`/checkout/offers?kind=${kind}`);
      if (!response.ok) throw new Error(`offers answered ${response.status}`);
      const offers = await response.json();
      if (offers.length) box.appendChild(offerGroup(kind, offers));
    }
    $('offers-loading').textContent = 'Offers loaded: choose one or more.';
  } catch (error) {
    $('offers-loading').textContent = `The offers could not be loaded (${error.message}). Reload the page to try again.`;
  }
}

function offerGroup(kind, offers) {
  const fieldset = document.createElement('fieldset');
  const legend = document.createElement('legend');
  legend.textContent = KIND_TITLES[kind];
  fieldset.appendChild(legend);
  for (const offer of offers) {
    offersById.set(offer.offer_id, offer);
    const row = document.createElement('div');
    row.className = 'offer';
    const input = document.createElement('input');
    input.type = 'checkbox';
    input.id = `offer-${offer.offer_id}`;
    input.name = 'offer';
    input.value = offer.offer_id;
    input.disabled = offer.capacity_left <= 0;
    input.addEventListener('change', showTotal);
    const label = document.createElement('label');
    label.htmlFor = input.id;
    const title = document.createElement('span');
    title.textContent = `${offer.description} — ${offer.supplier}`;
    const terms = document.createElement('span');
    terms.className = 'terms';
    terms.textContent = termsText(offer) + (offer.capacity_left <= 0 ? ' · sold out' : '');
    label.append(title, terms);
    const price = document.createElement('span');
    price.className = 'price';
    price.textContent = money(offer.price);
    row.append(input, label, price);
    fieldset.appendChild(row);
  }
  return fieldset;
}

function termsText(offer) {
  const terms = offer.cancellation || {};
  if (terms.cancellable === false) return 'cannot be cancelled';
  if (!terms.refundable) return 'non-refundable';
  const fee = terms.fee_bps ? `${terms.fee_bps / 100} % fee` : 'free';
  const freeUntil = terms.free_until ? new Date(terms.free_until) : null;
  const until = freeUntil && freeUntil > new Date() && terms.fee_bps
    ? `free until ${freeUntil.toLocaleDateString()}, then ` : '';
  return `cancellation: ${until}${fee}`;
}

function chosen() {
  return [...document.querySelectorAll('input[name=offer]:checked')].map((input) => offersById.get(input.value));
}

function showTotal() {
  const offers = chosen();
  $('total').textContent = offers.length
    ? money({amount: offers.reduce((sum, offer) => sum + offer.price.amount, 0), currency: offers[0].price.currency})
    : '—';
}

// --- checkout ------------------------------------------------------------------------------------

function formError(message, field) {
  const box = $('form-error');
  box.textContent = message;
  box.hidden = false;
  if (field) {
    field.setAttribute('aria-invalid', 'true');
    field.focus();
  } else {
    box.focus();
  }
}

function clearFormErrors() {
  $('form-error').hidden = true;
  document.querySelectorAll('[aria-invalid=true]').forEach((field) => field.removeAttribute('aria-invalid'));
}

async function submit(event) {
  event.preventDefault();
  clearFormErrors();
  const offers = chosen();
  if (!offers.length) return formError('Choose at least one offer.', document.querySelector('input[name=offer]'));
  for (const id of ['email', 'name', 'first_name', 'last_name', 'birth_date', 'document_number']) {
    const field = $(id);
    if (!field.value.trim() || !field.checkValidity()) {
      return formError(`Please fill in “${field.labels[0].firstChild.textContent.trim()}”.`, field);
    }
  }
  if (new Set(offers.map((offer) => offer.price.currency)).size > 1) {
    return formError('One booking is paid in one currency: choose offers in the same currency.');
  }
  const pay = $('pay');
  pay.disabled = true;
  pay.textContent = 'Paying…';
  try {
    const result = await stripe.createPaymentMethod({
      type: 'card', card, billing_details: {name: $('name').value.trim(), email: $('email').value.trim()},
    });
    if (result.error) return formError(`Card: ${result.error.message || 'refused'}`);
    attemptKey = attemptKey || crypto.randomUUID();
    const response = await fetch('/bookings', {
      method: 'POST',
      headers: {'Content-Type': 'application/json', 'Idempotency-Key': attemptKey},
      body: JSON.stringify(bookingRequest(offers, result.paymentMethod.id)),
    });
    const body = await response.json().catch(() => ({}));
    if (response.status !== 202 && response.status !== 200) {
      if (response.status < 500) attemptKey = null;  // a refused request: the next try is new
      const fields = (body.error && body.error.fields) || [];
      const detail = fields.map((f) => `${f.field}: ${f.message}`).join('; ');
      return formError(`The booking was refused: ${(body.error && body.error.message) || response.status}${detail ? ` (${detail})` : ''}`);
    }
    attemptKey = null;
    booking = {id: body.booking_id, token: body.access_token};
    sessionStorage.setItem('passage-booking', JSON.stringify(booking));
    showBooking();
    follow();
  } catch (error) {
    formError(`Something went wrong (${error.message}); press “Pay and book” again: it will not book twice.`);
  } finally {
    pay.disabled = false;
    pay.textContent = 'Pay and book';
  }
}

function bookingRequest(offers, paymentMethod) {
  return {
    customer: {email: $('email').value.trim(), name: $('name').value.trim()},
    travellers: [{
      first_name: $('first_name').value.trim(), last_name: $('last_name').value.trim(),
      birth_date: $('birth_date').value, document_number: $('document_number').value.trim(),
    }],
    items: offers.map((offer) => ({
      offer_id: offer.offer_id, quantity: 1, expected_price: offer.price, optional: offer.kind === 'activity',
    })),
    payment: {payment_method: paymentMethod},
  };
}

// --- the live booking ----------------------------------------------------------------------------

function showBooking() {
  $('checkout').hidden = true;
  $('booking').hidden = false;
  $('booking-id').textContent = booking.id;
  $('booking-title').focus();
}

function api(path, options = {}) {
  return fetch(`/bookings/${booking.id}${path}`, {
    ...options, headers: {Authorization: `Bearer ${booking.token}`, ...(options.headers || {})},
  });
}

// Follow the event stream until the booking reaches a terminal status, reconnecting after a
// dropped connection with Last-Event-ID (the server resumes after that timeline entry).
async function follow() {
  if (following) return;
  following = true;
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        const headers = {Accept: 'text/event-stream'};
        if (lastEventId) headers['Last-Event-ID'] = String(lastEventId);
        const response = await api('/events', {headers});
        if (response.status === 404) {
          bookingError('This booking cannot be found any more.');
          return;
        }
        if (!response.ok) throw new Error(`the event stream answered ${response.status}`);
        attempt = 0;
        await readEvents(response.body, onEvent);
        if (current && TERMINAL.has(current.status)) return;
      } catch (error) {
        if (attempt > 3) bookingError(`Live updates are interrupted (${error.message}); retrying…`);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(1000 * 2 ** attempt, 10000)));
    }
  } finally {
    following = false;
  }
}

// A small Server-Sent Events reader over a fetch() body (EventSource cannot send headers).
async function readEvents(body, handle) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
      const message = {event: 'message', data: [], id: null};
      for (const line of block.split(/\r?\n/)) {
        if (!line || line.startsWith(':')) continue;  // a comment: the heartbeat
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') message.data.push(text);
        else if (field === 'event') message.event = text;
        else if (field === 'id') message.id = text;
      }
      if (message.data.length) handle(message.event, JSON.parse(message.data.join('\n')), message.id);
    }
  }
}

function onEvent(type, data, id) {
  if (type === 'timeline') {
    lastEventId = Number(id);
    addTimelineEntry(data);
  } else if (type === 'booking') {
    render(data);
  }
}

function addTimelineEntry(entry) {
  const item = document.createElement('li');
  item.dataset.seq = entry.seq;
  item.className = `outcome-${entry.outcome}`;
  const time = document.createElement('time');
  time.dateTime = entry.at;
  time.textContent = new Date(entry.at).toLocaleTimeString(undefined, {hour12: false});
  const text = document.createElement('span');
  text.textContent = `${entry.step} — ${entry.outcome}${entry.detail ? `: ${entry.detail}` : ''}`;
  item.append(time, text);
  $('timeline').appendChild(item);
}

function render(view) {
  const previous = current;
  current = view;
  if (!previous || previous.status !== view.status) {
    $('status').textContent = STATUS_TEXT[view.status] || view.status;
    $('status').dataset.status = view.status;
  }
  renderItems(view);
  renderPayment(view);
  renderPriceChange(view, previous);
  renderPaymentAction(view);
  renderOutcome(view, previous);
  const cancellable = !TERMINAL.has(view.status) && !['CONFIRMING', 'CAPTURING', 'CANCELLING', 'COMPENSATING'].includes(view.status);
  $('cancel').hidden = !(view.status === 'CONFIRMED' || cancellable);
  $('new-booking').hidden = !TERMINAL.has(view.status);
}

function renderItems(view) {
  const body = $('items').querySelector('tbody');
  body.replaceChildren(...view.items.map((item) => {
    const row = document.createElement('tr');
    const offer = offersById.get(item.offer_id);
    const cells = [
      offer ? offer.description : item.offer_id,
      item.status + (item.error ? ` (${item.error.message})` : ''),
      money(item.price),
      item.confirmation_code || (item.cancellation_fee ? `fee ${money(item.cancellation_fee)}` : '—'),
    ];
    for (const text of cells) {
      const cell = document.createElement('td');
      cell.textContent = text;
      row.appendChild(cell);
    }
    return row;
  }));
}

function renderPayment(view) {
  const payment = view.payment;
  const rows = [['Status', payment.status], ['Authorized', money(payment.authorized)], ['Captured', money(payment.captured)],
    ['Refunded', money(payment.refunded)], ['Cancellation fees kept', money(payment.fees_kept)]];
  $('payment').replaceChildren(...rows.flatMap(([term, value]) => {
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.textContent = value;
    dd.dataset.field = term.toLowerCase().replace(/ /g, '-');
    return [dt, dd];
  }));
}

function renderPriceChange(view, previous) {
  const panel = $('price-change');
  const waiting = view.status === 'AWAITING_PRICE_ACCEPTANCE';
  panel.hidden = !waiting;
  if (!waiting) return;
  $('price-change-detail').textContent =
    `You chose this trip at ${money(view.expected_total)}; the suppliers now ask ${money(view.quoted_total)}.`;
  if (!previous || previous.status !== view.status) $('price-change-title').focus();
}

async function decidePrice(accept) {
  for (const id of ['accept-price', 'decline-price']) $(id).disabled = true;
  try {
    const response = await api('/price-decision', {
      method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({accept}),
    });
    if (response.status >= 400) {
      const body = await response.json().catch(() => ({}));
      bookingError(`The answer was not taken: ${(body.error && body.error.message) || response.status}`);
    }
  } finally {
    for (const id of ['accept-price', 'decline-price']) $(id).disabled = false;
  }
}

async function renderPaymentAction(view) {
  const panel = $('payment-action');
  const secret = view.payment.client_secret;
  panel.hidden = view.status !== 'AWAITING_PAYMENT_ACTION';
  if (panel.hidden || !secret || authenticated.has(secret)) return;
  authenticated.add(secret);
  $('payment-action-title').focus();
  const result = await stripe.confirmCardPayment(secret);
  $('payment-action-detail').textContent = result.error
    ? `Your bank did not confirm the payment: ${result.error.message || 'authentication failed'}.`
    : 'Thank you: your bank confirmed the payment. Finishing the booking…';
}

function renderOutcome(view, previous) {
  const panel = $('outcome');
  const title = $('outcome-title');
  const detail = $('outcome-detail');
  panel.className = 'panel';
  if (view.status === 'CONFIRMED') {
    panel.classList.add('ok');
    title.textContent = 'Your trip is booked';
    detail.textContent = `Paid ${money(view.payment.captured)}. Confirmation codes: ` +
      view.items.filter((item) => item.confirmation_code).map((item) => item.confirmation_code).join(', ') + '.';
  } else if (view.status === 'CANCELLED') {
    title.textContent = 'Your booking is cancelled';
    detail.textContent = view.payment.captured.amount
      ? `Refunded ${money(view.payment.refunded)} of ${money(view.payment.captured)}; cancellation fees kept: ${money(view.payment.fees_kept)}.`
      : 'Nothing was charged.';
  } else if (view.status === 'FAILED') {
    panel.classList.add('bad');
    const declined = view.error && view.error.type === 'PAYMENT_DECLINED';
    title.textContent = declined ? 'Your card was declined' : 'The booking could not be completed';
    detail.textContent = `${view.error ? view.error.message : ''} Nothing was charged and nothing stays booked.`.trim();
  } else if (view.status === 'NEEDS_ATTENTION') {
    title.textContent = 'Our team is looking into your booking';
    detail.textContent = 'Nothing more is needed from you; this page updates by itself.';
  } else {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  if (!previous || previous.status !== view.status) title.focus();
}

function bookingError(message) {
  const box = $('booking-error');
  box.textContent = message;
  box.hidden = !message;
}

async function cancelBooking() {
  const button = $('cancel');
  button.disabled = true;
  bookingError('');
  try {
    const response = await api('/cancel', {method: 'POST'});
    const body = await response.json().catch(() => ({}));
    if (response.status >= 400) {
      bookingError(`The booking cannot be cancelled now: ${(body.error && body.error.message) || response.status}`);
      return;
    }
    render(body);
    follow();  // the stream ended at CONFIRMED: follow the cancellation to its end
  } finally {
    button.disabled = false;
  }
}

function startOver() {
  sessionStorage.removeItem('passage-booking');
  window.location.reload();
}

// --- wiring --------------------------------------------------------------------------------------

$('checkout').addEventListener('submit', submit);
$('accept-price').addEventListener('click', () => decidePrice(true));
$('decline-price').addEventListener('click', () => decidePrice(false));
$('cancel').addEventListener('click', cancelBooking);
$('new-booking').addEventListener('click', startOver);
loadOffers().then(() => {
  const saved = sessionStorage.getItem('passage-booking');
  if (saved) {
    booking = JSON.parse(saved);
    showBooking();
    follow();
  }
});
