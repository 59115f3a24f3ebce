/** The MP's logs, one per endpoint (CMTrace, components named as the product's). */
import { createComponentLog } from '../shared/cmtrace-log.ts';
import type { MpLogs } from './management-point.ts';

export function createMpLogs(dir: string, echo = false): MpLogs {
  return {
    registration: createComponentLog({ dir, name: 'MP_Registration', component: 'MP_RegistrationManager', echo }),
    // Written on every policy and location request: kept open between lines (docs/adr/0013-mp-caches.md).
    policy: createComponentLog({ dir, name: 'MP_Policy', component: 'MP_PolicyManager', echo, keepOpen: true }),
    location: createComponentLog({ dir, name: 'MP_Location', component: 'MP_LocationManager', echo, keepOpen: true }),
    relay: createComponentLog({ dir, name: 'MP_Relay', component: 'MP_RelayEndpoint', echo }),
  };
}
