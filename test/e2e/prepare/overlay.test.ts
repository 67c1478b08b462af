import t from 'tap';
import { needDocker } from '../../helpers/prepare.js';
import { prepareSuite } from '../../helpers/prepare-suite.js';

if (needDocker(t)) prepareSuite(t, { backend: 'overlay' });
