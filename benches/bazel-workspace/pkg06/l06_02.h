#ifndef PKG06_L06_02_H
#define PKG06_L06_02_H
#include <string>
#include <vector>

namespace l06_02 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l06_02

#endif
