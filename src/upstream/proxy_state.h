/*
 * proxy_state: how far a request's exchange with its upstream has come. Owned
 * by proxy.c, kept in the request; every change goes through proxy.c's one
 * transition function (debug log). The request body's own progress is
 * request->req_body_done: it runs alongside (an upstream may answer before the
 * whole body is sent).
 */
#ifndef MOAT_PROXY_STATE_H
#define MOAT_PROXY_STATE_H

enum proxy_state {
    PROXY_IDLE = 0,   /* the phases have not handed the request over yet */
    PROXY_CONNECTING, /* waiting for an upstream connection (also on a retry) */
    PROXY_AWAIT_HEAD, /* request head sent (body may still stream); reading the response head */
    PROXY_RELAY_BODY, /* response head relayed to the client; relaying its body */
    PROXY_TUNNEL,     /* after a 101: bytes relayed both ways */
    PROXY_DONE,       /* the whole response is queued to the client */
};

const char *proxy_state_str(enum proxy_state st);

#endif
