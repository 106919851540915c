#ifndef PKG08_L08_05_H
#define PKG08_L08_05_H
#include <string>
#include <vector>

namespace l08_05 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l08_05

#endif
