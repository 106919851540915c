#ifndef PKG06_L06_07_H
#define PKG06_L06_07_H
#include <string>
#include <vector>

namespace l06_07 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l06_07

#endif
