#ifndef PKG08_L08_07_H
#define PKG08_L08_07_H
#include <string>
#include <vector>

namespace l08_07 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l08_07

#endif
